"""Summarise a run of benchmarks/gpu_proof.sh: the figures issue 17 asks for, as
OUT/lm-small_<hardware>_<yyyymmdd>.md and .json.

    python benchmarks/gpu_proof_summary.py --out OUT --work WORK --date 20261201 [--dry-run]

Reads what the script left: OUT/info.json (`trainwise info --config`), WORK/stages.jsonl (one line
per bench stage: done, timeout, failed or skipped), WORK/stages/<S>/results.json and timing.json
(each stage's bench), WORK/bench/variants/*/run.json (each variant's training: its figures
survive a stage stopped before its timing phase ended), WORK/estimate/*.json (`trainwise
estimate`) and WORK/numerics/numerics.json (`trainwise numerics`, with the FP8 preflight).

Speed ratios are paired per timing round, as the bench computes them (trainwise.bench.timing_stats):
bf16 vs fp32 from the stage that timed both, fp8 vs bf16 from the rounds of the stage that timed
both with the same AC and compile setting. Without a timing phase (a stage stopped early) a ratio
of the training runs' medians is given and marked unpaired.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from trainwise.bench.results import mfu
from trainwise.bench.timing_stats import ratio_summary, round_ratios
from trainwise.rundir import write_atomic, write_json

ESTIMATE_TARGET = 0.15  # issue 17: the estimate within ±15% of max_memory_allocated
MFU_GOAL_BF16 = 0.40
MAX_RATIO_CI = 0.10  # as bench.max_ratio_ci's default
TORCHAO_REFERENCE = (
    "torchao's published float8 training figure: +25% tokens/s for tensorwise scaling on Llama3-8B, "
    "8x H100, torch.compile (torchao float8 README)"
)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def hardware_name(info: dict | None, dry_run: bool) -> str:
    """'h200' from 'NVIDIA H200'; 'cpu-dryrun' for a dry run, so CPU figures never carry a GPU's name."""
    if dry_run or not info or info.get("device") != "cuda":
        return "cpu-dryrun" if dry_run else "cpu"
    name = re.sub(r"^nvidia\s+", "", info.get("gpu_name", "gpu"), flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-").split("-")[0] or "gpu"


# ---------------------------------------------------------------------------------------------
# reading the stages and variants


def load_stages(work: Path) -> list[dict]:
    lines = (work / "stages.jsonl").read_text().splitlines() if (work / "stages.jsonl").is_file() else []
    stages = [json.loads(line) for line in lines if line.strip()]
    for s in stages:
        d = work / "stages" / s["stage"]
        s["results"] = read_json(d / "results.json") or []
        s["timing"] = read_json(d / "timing.json")
    return stages


def trained_variants(work: Path) -> dict[str, dict]:
    """config hash -> {label, overrides, is_control, trained: run.json} for every variant trained."""
    out = {}
    for meta_path in sorted((work / "bench" / "variants").glob("*/variant.json")):
        meta = read_json(meta_path) or {}
        trained = read_json(meta_path.parent / "run.json")
        if trained is not None and meta.get("kind") == "trainwise":
            out[meta["config_hash"]] = {**meta, "trained": trained}
    return out


def setting(overrides: dict, is_control: bool) -> tuple[str, str, bool]:
    """(precision, ac, compile) of a variant; the control is the base: fp32, no AC, eager."""
    if is_control:
        return "fp32", "none", False
    return (
        overrides.get("precision.policy", "fp32"),
        overrides.get("memory.ac", "none"),
        overrides.get("train.compile", "false") == "true",
    )


def variant_rows(stages: list[dict], trained: dict, info: dict) -> list[dict]:
    """One row per trained variant: its bench row from the last stage that finished with it (the
    control: from stage A), else its training run's own figures."""
    rows = {}
    for s in stages:
        for r in s["results"]:
            if r.get("kind") == "trainwise" and (r["config_hash"] not in rows or not r.get("is_control")):
                rows[r["config_hash"]] = {**r, "stage": s["stage"]}
    out = []
    for h, v in trained.items():
        t = v["trained"]
        row = rows.get(h) or fallback_row(v, info)
        precision, ac, compiled = setting(v.get("overrides", {}), v.get("is_control", False))
        step_ms = row.get("median_step_ms")
        flops = t.get("flops_per_step")
        out.append(
            {
                "label": v["label"],
                "config_hash": h,
                "stage": row.get("stage"),
                "precision": precision,
                "ac": ac,
                "compile": compiled,
                "is_control": v.get("is_control", False),
                "status": t.get("status"),
                "reason": t.get("reason"),
                "median_step_ms": step_ms,
                "step_ms_min": row.get("step_ms_min"),
                "step_ms_max": row.get("step_ms_max"),
                "timing_source": row.get("timing_source"),
                "tokens_per_s": row.get("tokens_per_s"),
                "achieved_tflops": flops / (step_ms / 1e3) / 1e12 if flops and step_ms else None,
                "mfu": row.get("mfu"),
                "mfu_basis": row.get("mfu_basis"),
                "mfu_vs_fp8_peak": fp8_mfu(precision, flops, step_ms, info),
                "max_memory_allocated": t.get("max_memory_allocated"),
                "max_memory_reserved": t.get("max_memory_reserved"),
                "peak_activation_bytes": t.get("peak_activation_bytes"),
                "peak_memory_bytes": t.get("peak_memory_bytes"),
                "memory_measurement_note": t.get("memory_measurement_note"),
                "compile_warmup_s": t.get("compile_warmup_s"),
                "fp8_layers": t.get("fp8_layers"),
                "final_val_loss": t.get("final_val_loss"),
                "val_loss_rise_vs_control": row.get("val_loss_rise"),
                "quality_verdict": row.get("quality_verdict", "not compared"),
                "quality_detail": row.get("quality_detail"),
                "speed_ratio_vs_control": row.get("speed_ratio_vs_control"),
            }
        )
    order = {"fp32": 0, "bf16-mixed": 1, "fp8-tensorwise": 2, "fp8-rowwise": 3}
    return sorted(out, key=lambda r: (r["compile"], r["ac"] != "none", order.get(r["precision"], 9), r["label"]))


def fallback_row(v: dict, info: dict) -> dict:
    """The figures of a variant whose stage wrote no results.json: its training run's own steps."""
    t = v["trained"]
    precision = setting(v.get("overrides", {}), v.get("is_control", False))[0]
    value, basis = mfu(t.get("flops_per_step"), t.get("median_step_ms"), precision, info or {})
    return {
        "median_step_ms": t.get("median_step_ms"),
        "step_ms_min": t.get("min_step_ms"),
        "step_ms_max": t.get("max_step_ms"),
        "tokens_per_s": t.get("tokens_per_s"),
        "mfu": value,
        "mfu_basis": basis,
        "timing_source": "training run only (its stage ended before the timing phase): not paired",
        "quality_verdict": "not compared",
    }


def fp8_mfu(precision: str, flops: float | None, step_ms: float | None, info: dict) -> float | None:
    """Model FLOP/s over the measured fp8 square peak of the variant's scaling (fp8 variants only)."""
    if not precision.startswith("fp8") or not flops or not step_ms:
        return None
    peak = (info.get("matmul_gflops") or {}).get("fp8_rowwise" if precision == "fp8-rowwise" else "fp8")
    return flops / (step_ms / 1e3) / 1e9 / peak if peak else None


# ---------------------------------------------------------------------------------------------
# the figures


def paired_speedup(stage: dict, slow_hash: str, fast_hash: str, what: str) -> dict | None:
    """Speed-up of `fast` over `slow` (slow step time / fast step time), paired per timing round."""
    timing = stage.get("timing")
    if not timing:
        return None
    per = timing.get("variants", {})
    if slow_hash not in per or fast_hash not in per:
        return None
    ratios = round_ratios(per[slow_hash].get("step_ms", []), per[fast_hash].get("step_ms", []))
    return {
        **ratio_summary(ratios, timing.get("unreliable_reason"), MAX_RATIO_CI, what),
        "stage": stage["stage"],
        "paired": True,
    }


def unpaired_speedup(slow: dict, fast: dict, what: str) -> dict | None:
    if not slow.get("median_step_ms") or not fast.get("median_step_ms"):
        return None
    mid = slow["median_step_ms"] / fast["median_step_ms"]
    return {
        "median": mid,
        "ci95": None,
        "n_rounds": 0,
        "reliable": False,
        "paired": False,
        "stage": fast.get("stage"),
        "note": f"{what}: {mid:.2f}x from two training runs' medians, not paired in timing rounds: indicative only",
    }


def speedup(stages: list[dict], slow: dict, fast: dict, what: str) -> dict | None:
    """Paired in the last stage that timed both, else unpaired."""
    for s in reversed(stages):
        got = paired_speedup(s, slow["config_hash"], fast["config_hash"], what)
        if got and got.get("n_rounds"):
            return got
    return unpaired_speedup(slow, fast, what)


def find(rows: list[dict], precision: str, ac: str = "none", compiled: bool = False) -> dict | None:
    return next(
        (
            r
            for r in rows
            if (r["precision"], r["ac"], r["compile"]) == (precision, ac, compiled) and r["median_step_ms"]
        ),
        None,
    )


def fp8_figures(stages: list[dict], rows: list[dict]) -> list[dict]:
    out = []
    for compiled in (False, True):
        for ac in ("none", "selective"):
            bf16 = find(rows, "bf16-mixed", ac, compiled)
            for recipe in ("fp8-tensorwise", "fp8-rowwise"):
                fp8 = find(rows, recipe, ac, compiled)
                if not bf16 or not fp8:
                    continue
                loss = (
                    (fp8["final_val_loss"] - bf16["final_val_loss"])
                    if fp8["final_val_loss"] is not None and bf16["final_val_loss"] is not None
                    else None
                )
                out.append(
                    {
                        "recipe": recipe,
                        "ac": ac,
                        "compile": compiled,
                        "speedup_vs_bf16": speedup(
                            stages, bf16, fp8, f"{recipe} over bf16-mixed (ac={ac}, compile={compiled})"
                        ),
                        "val_loss_minus_bf16": loss,
                        "quality_verdict_vs_fp32": fp8["quality_verdict"],
                    }
                )
    return out


def estimate_errors(work: Path, rows: list[dict]) -> list[dict]:
    """`trainwise estimate` for each variant's precision and AC against what the variant measured:
    max_memory_allocated on CUDA; on a CPU (dry run) the tracked peak, the only figure there."""
    out = []
    for r in rows:
        est = read_json(work / "estimate" / f"{r['precision']}-{r['ac']}.json")
        if not est:
            continue
        measured, basis = (
            (r["max_memory_allocated"], "max_memory_allocated")
            if r["max_memory_allocated"]
            else (r["peak_memory_bytes"], "peak tracked memory (no CUDA allocator here)")
        )
        error = est["peak_memory_bytes"] / measured - 1 if measured else None
        out.append(
            {
                "label": r["label"],
                "estimate_bytes": est["peak_memory_bytes"],
                "measured_bytes": measured,
                "measured_basis": basis,
                "max_memory_reserved": r["max_memory_reserved"],
                "error": error,
                "within_target": abs(error) <= ESTIMATE_TARGET if error is not None else None,
                "note": "the estimate does not model torch.compile" if r["compile"] else None,
            }
        )
    return out


def preflight_check(work: Path, fp8: list[dict], device: str) -> dict | None:
    """The preflight's verdict (FP8 pays on the target GPU for some layers, or for none) beside the
    measured fp8-tensorwise / bf16 ratio: compiled where measured (as torchao measures), else eager."""
    report = read_json(work / "numerics" / "numerics.json")
    if not report:
        return None
    pf = report["preflight"]
    predicted = bool(pf["fp8_layers"])
    largest = max((v["gemm"] for v in pf["layers"].values()), key=lambda g: g[1] * g[2], default=None)
    estimates = [v["speed"]["speedup"] for v in pf["layers"].values() if v["speed"].get("speedup")]
    out = {
        "gpu": pf["gpu"],
        "verdict": pf["verdict"],
        "predicted_fp8_pays": predicted,
        "fp8_layers": len(pf["fp8_layers"]),
        "linear_layers": len(pf["layers"]),
        "largest_gemm_mxkxn": largest,
        "measured": None,
        "matched": None,
        "estimated_speedup_range": (
            f"{min(estimates):.2f}x to {max(estimates):.2f}x" if len(set(estimates)) > 1 else f"{estimates[0]:.2f}x"
        )
        if estimates
        else "no estimate",
    }
    candidates = [f for f in fp8 if f["recipe"] == "fp8-tensorwise" and f["ac"] == "none" and f["speedup_vs_bf16"]]
    chosen = next((f for f in candidates if f["compile"]), None) or next(iter(candidates), None)
    if device != "cuda":
        out["note"] = "not judged: no GPU here, fp8 runs emulated (real casts, fp32 matmuls): its speed says nothing"
        return out
    if chosen is None:
        out["note"] = "not judged: fp8-tensorwise and bf16-mixed were not both measured"
        return out
    sp = chosen["speedup_vs_bf16"]
    faster = _side_of_one(sp)
    out["measured"] = {"compile": chosen["compile"], "speedup": sp["median"], "ci95": sp["ci95"], "faster": faster}
    out["matched"] = None if faster is None else faster == predicted
    out["note"] = (
        "inconclusive: the 95% interval of the measured ratio includes 1 (or was not paired)"
        if faster is None
        else "the preflight was right"
        if out["matched"]
        else "the preflight was wrong"
    )
    return out


def _side_of_one(sp: dict) -> bool | None:
    """True when fp8 is shown faster (interval above 1), False when shown slower, None otherwise."""
    if not sp.get("ci95") or not sp.get("paired"):
        return None
    lo, hi = sp["ci95"]
    return True if lo > 1 else False if hi < 1 else None


# ---------------------------------------------------------------------------------------------
# the report


def summarise(out: Path, work: Path, date: str, command: str, dry_run: bool) -> dict:
    info = read_json(out / "info.json") or {}
    stages = load_stages(work)
    rows = variant_rows(stages, trained_variants(work), info)
    control, bf16 = find(rows, "fp32"), find(rows, "bf16-mixed")
    fp8 = fp8_figures(stages, rows)
    result = {
        "what": "GPU proof of configs/lm-small.toml (issue 17)",
        "dry_run": dry_run,
        "hardware": hardware_name(info, dry_run),
        "date": date,
        "command": command,
        "device": {
            k: info.get(k)
            for k in ("device", "gpu_name", "compute_capability", "gpu_memory_bytes", "cpu_model", "cpu_cores")
        },
        "peak_gflops": {
            "square": info.get("matmul_gflops"),
            "model_shapes": (info.get("model_gemm") or {}).get("gflops"),
        },
        "stages": [
            {k: s.get(k) for k in ("stage", "title", "status", "seconds", "reason", "variants")} for s in stages
        ],
        "figures": {
            "bf16_vs_fp32_speedup": speedup(stages, control, bf16, "bf16-mixed over fp32")
            if control and bf16
            else None,
            "fp8_vs_bf16": fp8,
            "mfu": {r["label"]: r["mfu"] for r in rows},
            "mfu_goal_bf16": MFU_GOAL_BF16,
            "estimate_vs_measured": estimate_errors(work, rows),
            "preflight": preflight_check(work, fp8, info.get("device", "cpu")),
        },
        "torchao_reference": TORCHAO_REFERENCE,
        "variants": rows,
    }
    name = f"lm-small_{result['hardware']}_{date}"
    write_json(out / f"{name}.json", result)
    write_atomic(out / f"{name}.md", render_markdown(result))
    return result


def _gib(b) -> str:
    return f"{b / 2**30:.3g}" if b else "-"


def _x(sp: dict | None) -> str:
    if not sp or sp.get("median") is None:
        return "n/a"
    ci = f" (95% CI {sp['ci95'][0]:.2f}-{sp['ci95'][1]:.2f})" if sp.get("ci95") else ""
    return f"{sp['median']:.2f}x{ci}" + ("" if sp.get("reliable") else f" [unreliable: {sp.get('note')}]")


def _pct(x, signed: bool = False) -> str:
    return "-" if x is None else (f"{x:+.1%}" if signed else f"{x:.1%}")


def _num(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def render_markdown(res: dict) -> str:
    f = res["figures"]
    lines = [f"# lm-small GPU proof: {res['hardware']}, {res['date']}", ""]
    if res["dry_run"]:
        lines += [
            "**DRY RUN on a CPU with a tiny model and a few steps: it checks that benchmarks/gpu_proof.sh runs end "
            "to end. None of its figures says anything about a GPU or about lm-small.**",
            "",
        ]
    dev = res["device"]
    lines += [
        f"Device: {dev.get('gpu_name') or dev.get('cpu_model')} ({dev.get('device')}, compute capability "
        f"{dev.get('compute_capability') or '-'}). Command: `{res['command']}`.",
        "",
        "## Figures",
        "",
    ]
    lines.append(f"- bf16-mixed vs fp32 speed-up (eager, no AC): {_x(f['bf16_vs_fp32_speedup'])}")
    for x in f["fp8_vs_bf16"]:
        lines.append(
            f"- {x['recipe']} vs bf16-mixed (ac={x['ac']}, compile={'on' if x['compile'] else 'off'}): "
            f"{_x(x['speedup_vs_bf16'])}; validation loss {_num(x['val_loss_minus_bf16'], '+.4f')} vs bf16; quality vs "
            f"fp32: {x['quality_verdict_vs_fp32']}"
        )
    bf16 = [r for r in res["variants"] if r["precision"] == "bf16-mixed" and r["mfu"] is not None]
    lines.append(
        f"- MFU goal for bf16 >= {MFU_GOAL_BF16:.0%}: "
        + (", ".join(f"{r['label']} {_pct(r['mfu'])}" for r in bf16) or "not measured")
    )
    for e in f["estimate_vs_measured"]:
        lines.append(
            f"- estimate vs {e['measured_basis']}, {e['label']}: {_gib(e['estimate_bytes'])} vs "
            f"{_gib(e['measured_bytes'])} GiB, error {_pct(e['error'], True)} "
            f"({'within' if e['within_target'] else 'outside'} ±{ESTIMATE_TARGET:.0%})"
            + (f"; {e['note']}" if e["note"] else "")
        )
    pf = f["preflight"]
    if pf:
        m = pf["measured"]
        lines.append(
            f'- FP8 preflight ({pf["gpu"]}): "{pf["verdict"]}" ({pf["fp8_layers"]} of {pf["linear_layers"]} Linear '
            "layers; largest GEMM "
            f"M x K x N {pf['largest_gemm_mxkxn']}). Measured fp8-tensorwise / bf16: "
            + (f"{m['speedup']:.2f}x (compile {'on' if m['compile'] else 'off'})" if m else "-")
            + f". Matched: {pf['matched']} ({pf.get('note')})"
        )
    else:
        lines.append("- FP8 preflight: no numerics report (trainwise numerics did not finish)")
    lines += [
        "",
        f"Reference: {res['torchao_reference']}. Llama3-8B's Linear layers are 4096 wide with a 14336-wide MLP; "
        + (
            f"lm-small's largest GEMM is M x K x N = {pf['largest_gemm_mxkxn']}, and the preflight's roofline, which "
            f"charges each fp8 GEMM the casts of its operands, estimated {pf['estimated_speedup_range']} per layer on "
            f"{pf['gpu']}."
            if pf
            else ""
        ),
        "",
    ]
    lines += [
        "## Peak GEMM throughput (GFLOP/s, measured in this run)",
        "",
        "| kind | square | lm-small's shapes |",
        "|---|---|---|",
    ]
    square, model = res["peak_gflops"]["square"] or {}, res["peak_gflops"]["model_shapes"] or {}
    for k in dict.fromkeys([*square, *model]):
        lines.append(f"| {k} | {square.get(k, '-')} | {model.get(k, '-')} |")
    lines += [
        "",
        "## Variants",
        "",
        "| variant | stage | median step ms (min-max) | tokens/s | TFLOP/s | MFU | MFU vs fp8 peak | max allocated GiB "
        "| max reserved GiB | activations GiB | val loss | vs control | quality | timing |",
        "|" + "---|" * 14,
    ]
    for r in res["variants"]:
        spread = f"{_num(r['median_step_ms'], '.1f')} ({_num(r['step_ms_min'], '.1f')}-{_num(r['step_ms_max'], '.1f')})"
        lines.append(
            f"| {r['label']} | {r['stage'] or '-'} | {spread} | {_num(r['tokens_per_s'], ',.0f')} | "
            f"{_num(r['achieved_tflops'], '.3g')} | {_pct(r['mfu'])} | {_pct(r['mfu_vs_fp8_peak'])} | "
            f"{_gib(r['max_memory_allocated'])} | {_gib(r['max_memory_reserved'])} | "
            f"{_gib(r['peak_activation_bytes'])} | {_num(r['final_val_loss'], '.4f')} | "
            f"{_pct(r['val_loss_rise_vs_control'], True)} | {r['quality_verdict']} | "
            f"{r['timing_source'] or r['status']} |"
        )
    lines += ["", "## Stages", "", "| stage | what it answers | status | seconds | note |", "|---|---|---|---|---|"]
    for s in res["stages"]:
        lines.append(f"| {s['stage']} | {s['title']} | {s['status']} | {s['seconds']} | {s['reason']} |")
    lines += [
        "",
        "MFU: model FLOPs (PaLM's count) over the measured bf16 square peak for bf16 and fp8 (bf16-equivalent), "
        "fp32's for fp32; `mfu_basis` in the JSON says which. Speed ratios: median of per-round paired ratios with a "
        "distribution-free 95% interval (trainwise.bench.timing_stats).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the script's output folder (info.json; the summary is written here)")
    ap.add_argument("--work", required=True, help="the script's work folder (stages, bench, estimate, numerics)")
    ap.add_argument("--date", required=True, help="yyyymmdd, for the file names")
    ap.add_argument("--command", default="benchmarks/gpu_proof.sh", help="the command that produced the run")
    ap.add_argument("--dry-run", action="store_true", help="a CPU dry run: named cpu-dryrun, and says so")
    args = ap.parse_args(argv)
    res = summarise(Path(args.out), Path(args.work), args.date, args.command, args.dry_run)
    print(f"wrote {args.out}/lm-small_{res['hardware']}_{args.date}.md and .json ({len(res['variants'])} variants)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
