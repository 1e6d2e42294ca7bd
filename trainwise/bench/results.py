"""From each variant's training run and timing-phase entry to one row per variant: speed with its spread,
MFU, memory, time to target, quality verdict against the fp32 control, numerics health, cost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from trainwise.bench.grid import Variant
from trainwise.bench.quality import GATE_METRIC, PRIMARY_METRIC, QualityRule, judge, noise_floor
from trainwise.bench.runner import FINISHED
from trainwise.evaluate.compare import infer_task
from trainwise.train.precision import fp8_gemm_kind

# which measured matmul peak (trainwise info) each policy's MFU is divided by
PEAK_DTYPE = {
    "fp32": "fp32",
    "bf16-mixed": "bf16",
    "bf16-true": "bf16",
    "fp16-mixed": "fp16",
    "fp8-tensorwise": "bf16",
    "fp8-rowwise": "bf16",
}
PEAK_UNREPRESENTATIVE = "peak unrepresentative"
KEEP_COLUMNS = [
    "id",
    "loss",
    "correct",
    "n_positions",
    "label",
    "pred",
]  # slices are not gated here: only the overall loss


def peak_dtype(v: Variant) -> str:
    """The dtype whose measured peak a variant's MFU is divided by (the baseline trains in fp32)."""
    return PEAK_DTYPE.get(v.cfg.precision.policy, "fp32") if v.kind == "trainwise" else "fp32"


def achieved_gflops(flops_per_step: float | None, step_ms: float | None) -> float | None:
    return flops_per_step / (step_ms / 1e3) / 1e9 if flops_per_step and step_ms else None


def mfu(
    flops_per_step: float | None, step_ms: float | None, policy: str, info: dict, gemm_gflops: float | None = None
) -> tuple[float | None, str]:
    """Model FLOP/s over the peak matmul FLOP/s of the policy's dtype measured on this machine,
    and the basis of that figure; never above 1 (DESIGN.md: no figure outside its physical bounds).

    The peak is the square-matrix probe's (`trainwise info`). Achieved FLOP/s above it means the
    probe does not represent the model's kernels (on a CPU, fp16's 1024^2 probe can take a slow
    path the model's shapes avoid), so the peak measured on the model's own GEMM shapes in that
    dtype (`gemm_gflops`, trainwise.env.measure_gemm_gflops) is used instead; above that too, no
    MFU is given: "peak unrepresentative". FP8 is divided by the bf16 peak ("bf16-equivalent"):
    `trainwise info` measures an fp8 peak too, and the GPU proof's summary divides by it as well."""
    dtype = PEAK_DTYPE.get(policy, "fp32")
    square = (info.get("matmul_gflops") or {}).get(dtype)
    fp8 = " (bf16-equivalent for fp8)" if policy.startswith("fp8") else ""
    if not flops_per_step or not step_ms or not square:
        return None, f"vs {dtype} peak {square} GFLOP/s{fp8}"
    achieved = achieved_gflops(flops_per_step, step_ms)
    if achieved <= square:
        return achieved / square, f"vs {dtype} peak {square:g} GFLOP/s (square-matrix probe){fp8}"
    if gemm_gflops and achieved <= gemm_gflops:
        return achieved / gemm_gflops, (
            f"vs {dtype} peak {gemm_gflops:.1f} GFLOP/s measured on the model's own matmul shapes "
            f"(the square-matrix probe's {square:g} GFLOP/s would give {achieved / square:.0%}){fp8}"
        )
    measured = (
        f" and on its own matmul shapes ({gemm_gflops:.1f})"
        if gemm_gflops
        else " (its own matmul shapes were not measured)"
    )
    return (
        None,
        f"{PEAK_UNREPRESENTATIVE}: the model ran {achieved:.1f} GFLOP/s, above the {dtype} peak of the square-matrix "
        f"probe ({square:g}){measured}{fp8}",
    )


def time_to_target(curve: list, target: float, step_ms: float | None) -> tuple[int | None, float | None]:
    """First validated step whose val loss <= target, and the training time to it (steps x median step)."""
    for step, loss in curve:
        if loss is not None and loss <= target:
            return step, (step * step_ms / 1e3 if step_ms else None)
    return None, None


def aggregate(v: Variant, result: dict | None, info: dict, cost_per_hour: float, timed: dict | None = None) -> dict:
    """One row per variant from its training run's `result` (run.json). Its speed (median step ms,
    spread, tokens/s, MFU) comes from the timing phase (`timed`: this variant's entry of
    timing.json) when it was timed there, else from the training run's own steps; `timing_source`
    says which. The control's other seeds are trained for the noise floor only: no speed is
    reported for them (their step times, kept in `step_ms_samples`, show run-to-run drift)."""
    # Over 60 lines on purpose: one row's fields, each set where its source (training run, timing phase, peaks) is at
    # hand; split up, the row would be assembled in several places.
    r = result or {"status": "not run", "reason": "it did not run"}
    policy = v.cfg.precision.policy
    row = {
        "variant": v.overrides,
        "label": v.label,
        "kind": v.kind,
        "is_control": v.is_control,
        "config_hash": v.hash,
        "status": r.get("status"),
        "reason": r.get("reason"),
        "precision": policy,
        "ac": v.cfg.memory.ac,
        "median_step_ms": None,
        "tokens_per_s": None,
        "mfu": None,
        "peak_activation_bytes": r.get("peak_activation_bytes"),
        "peak_memory_bytes": r.get("peak_memory_bytes"),
        "max_memory_allocated": r.get("max_memory_allocated"),
        "max_memory_reserved": r.get("max_memory_reserved"),
        "final_val_loss": r.get("final_val_loss"),
        "final_train_loss": r.get("final_train_loss"),
        "quality_verdict": "not compared",
        "val_examples": r.get("val_examples"),
        "pruned": r.get("prune"),
        "emulated": emulated_note(v, info),
        "steps": r.get("steps"),
    }
    if r.get("status") not in FINISHED or not r.get("median_step_ms"):
        return row
    row.update(speed_fields(r, timed))
    step_ms = row["median_step_ms"]
    value, label = mfu(
        r.get("flops_per_step"),
        step_ms,
        policy if v.kind == "trainwise" else "fp32",
        info,
        (timed or {}).get("gemm_gflops") if (timed or {}).get("peak_dtype") == peak_dtype(v) else None,
    )
    row.update(
        {
            "mfu": value,
            "mfu_basis": label,
            "mfu_note": PEAK_UNREPRESENTATIVE if label.startswith(PEAK_UNREPRESENTATIVE) else None,
            "throughput_unit": r.get("throughput_unit", "tokens"),
            "flops_per_step": r.get("flops_per_step"),
            "steps": r.get("steps"),
            "train_time_s": r["median_step_ms"] * (r.get("steps") or 0) / 1e3,
            "skipped_steps": r.get("skipped_steps", 0),
            "alarms": r.get("alarms", []),
            "curves": r.get("curves", {}),
            "memory_breakdown": r.get("memory_breakdown"),
            "train_median_step_ms": r["median_step_ms"],
            "step_ms_samples": r.get("step_ms_samples") or [],
        }
    )  # the training run's own speed and its noise
    if v.kind == "control-seed":
        row.update(
            {
                "median_step_ms": None,
                "tokens_per_s": None,
                "mfu": None,
                "timing_source": "not timed (trained for the noise floor)",
            }
        )
    row["health_issues"] = health_issues(r, v.cfg.precision.max_skipped_share)
    if cost_per_hour:
        row["cost_per_run"] = row["train_time_s"] / 3600 * cost_per_hour
    return row


def torch_device(info: dict):
    return torch.device(info.get("device") or "cpu")


def emulated_note(v: Variant, info: dict) -> str | None:
    """Why a variant's speed on this device says nothing about its technique, or None: fp8 off an
    GPU runs emulated (real fp8 casts, high-precision matmuls: the trainer's own rule), for its numerics only."""
    if (
        v.kind != "trainwise"
        or not v.cfg.precision.policy.startswith("fp8")
        or fp8_gemm_kind(torch_device(info)) != "emulated"
    ):
        return None
    return (
        f"emulated on this {info.get('device', 'cpu')} (real fp8 casts, no fp8 matmul units): its quality is checked "
        "here, its speed says nothing about fp8 hardware (an SM89+ GPU)"
    )


def speed_fields(trained: dict, timed: dict | None) -> dict:
    """median_step_ms, its spread, tokens_per_s and where they come from: the timing phase's
    interleaved rounds, or (a variant not timed there) the training run's timed steps."""
    units = trained["tokens_per_s"] * trained["median_step_ms"] / 1e3 if trained.get("tokens_per_s") else None
    if timed and timed.get("median_step_ms"):
        ms, units = timed["median_step_ms"], timed.get("units_per_step") or units
        n_rounds = sum(1 for r in timed.get("step_ms", []) if r)
        out = {
            "median_step_ms": ms,
            "step_ms_min": timed["min_step_ms"],
            "step_ms_max": timed["max_step_ms"],
            "step_ms_per_round": timed.get("round_median_ms"),
            "timed_steps": timed.get("timed_steps"),
            "timing_source": f"timing phase: {timed.get('timed_steps')} steps in {n_rounds} interleaved rounds",
            "speed_ratio_vs_control": timed.get("speed_ratio_vs_control"),
            "gemm_peak_gflops": timed.get("gemm_gflops"),
        }
    else:
        ms = trained["median_step_ms"]
        why = (timed or {}).get("reason") or ("the timing phase did not run" if timed is None else "no timed round")
        out = {
            "median_step_ms": ms,
            "step_ms_min": trained.get("min_step_ms"),
            "step_ms_max": trained.get("max_step_ms"),
            "timed_steps": trained.get("timed_steps"),
            "timing_source": (
                f"training run ({why}): not interleaved, so not comparable across variants on a busy machine"
            ),
        }
    out["tokens_per_s"] = units / (ms / 1e3) if units else None
    return out


def health_issues(summary: dict, max_skipped_share: float) -> list[str]:
    """Numerics problems as they stand at the end of the run: a loss-scale collapse, or a share of
    skipped steps above precision.max_skipped_share. (An alarm raised early, such as GradScaler's
    usual overflow on fp16's first step counted at step 10, is in `alarms` but is not an issue
    when the final share is below the limit.)"""
    issues = [a for a in summary.get("alarms", []) if a.startswith("loss-scale collapse")][:1]
    share = summary.get("skipped_share") or 0.0
    if share > max_skipped_share:
        issues.append(
            f"{summary.get('skipped_steps')} of {summary.get('steps')} steps ({share:.0%}) skipped as non-finite, "
            f"above precision.max_skipped_share = {max_skipped_share:.0%}"
        )
    return issues


def add_time_to_target(rows: list[dict], target: float) -> None:
    for row in rows:
        row["target_val_loss"] = target
        step, secs = time_to_target(row.get("curves", {}).get("val", []), target, row.get("median_step_ms"))
        row["steps_to_target"], row["time_to_target_s"] = step, secs


def add_quality(
    rows: list[dict],
    dirs: dict[str, Path],
    tolerance: float,
    confidence: float,
    seed_hashes: list[str] = (),
    examples_per_batch: int = 1,
    eval_batches: int = 1,
) -> dict:
    """Three-valued verdicts against the fp32 control on the same validation examples, with the
    control's seed-to-seed noise floor in the margin (trainwise.bench.quality). Returns what the
    report shows of the floor: {'measured', 'seeds', 'metric', 'primary_metric', 'margin', 'tolerance_abs',
    'control_loss', 'per_metric': {metric: {'per_seed', 'floor'}}} ('reason' when not measured)."""
    control = next((r for r in rows if r["is_control"]), None)
    if (
        control is None
        or control["status"] not in FINISHED
        or not (dirs[control["config_hash"]] / "predictions.parquet").is_file()
    ):
        for r in rows:
            r["quality_verdict"], r["quality_detail"] = "not compared", "the fp32 control did not finish"
        return {"measured": False, "reason": "the fp32 control did not finish"}
    base = _frame(dirs[control["config_hash"]])
    task = infer_task(base, "control")
    metric, primary = GATE_METRIC[task], PRIMARY_METRIC[task]
    by_hash = {r["config_hash"]: r for r in rows}
    seed_rows = [by_hash[h] for h in seed_hashes[1:] if h in by_hash]
    seed_frames = [base] + [
        _frame(dirs[r["config_hash"]])
        for r in seed_rows
        if r["status"] in FINISHED and (dirs[r["config_hash"]] / "predictions.parquet").is_file()
    ]
    floor = noise_floor(seed_frames, task, confidence)
    control_loss = control["final_val_loss"]
    floor_abs = floor[metric]["floor"] if floor else 0.0
    margin = tolerance * control_loss + floor_abs
    info = {
        "measured": floor is not None,
        "seeds": len(seed_frames),
        "metric": metric,
        "primary_metric": primary,
        "margin": margin,
        "tolerance_abs": tolerance * control_loss,
        "control_loss": control_loss,
        **({"per_metric": floor} if floor else {}),
    }
    if floor is None:
        info["reason"] = (
            f"bench.control_seeds = {len(seed_hashes)}: one seed, no floor"
            if len(seed_hashes) < 2
            else "the control's other seed(s) did not finish: "
            + "; ".join(f"{r['label']}: {r['status']}" for r in seed_rows)
        )
    rule = QualityRule(
        metric, primary, margin, control_loss, tolerance, floor_abs, confidence, examples_per_batch, eval_batches
    )
    _judge_rows(rows, control, seed_rows, dirs, base, rule, control_loss)
    return info


def _judge_rows(
    rows: list[dict],
    control: dict,
    seed_rows: list[dict],
    dirs: dict[str, Path],
    base: pd.DataFrame,
    rule: QualityRule,
    control_loss: float,
) -> None:
    """Each row's quality verdict and detail: the control, its other seeds, and every other variant
    judged against the control's predictions `base` by `rule`."""
    control["quality_verdict"], control["quality_detail"] = "control", "the fp32 control"
    for r in seed_rows:
        r["quality_verdict"], r["quality_detail"] = (
            "noise floor",
            f"the control with another seed: validation loss {_pct(_rise(r, control_loss))} vs the control",
        )
    for r in rows:
        if r is control or r in seed_rows:
            continue
        if r["status"] not in FINISHED:
            r["quality_verdict"], r["quality_detail"] = "not compared", f"{r['status']}: no quality claim"
            continue
        r["val_loss_rise"] = rise = _rise(r, control_loss)
        path = dirs[r["config_hash"]] / "predictions.parquet"
        if not path.is_file():  # the baseline row: no predictions, loss only
            r["quality_verdict"], r["quality_detail"] = (
                "not compared",
                f"validation loss {_pct(rise)} vs the control (no paired predictions)",
            )
            continue
        r.update(judge(base, _frame(dirs[r["config_hash"]]), rule, rise, r.get("val_examples")))


def _rise(row: dict, control_loss: float) -> float | None:
    return (
        (row["final_val_loss"] - control_loss) / control_loss
        if row.get("final_val_loss") is not None and control_loss
        else None
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _frame(d: Path) -> pd.DataFrame:
    df = pd.read_parquet(d / "predictions.parquet")
    return df[[c for c in df.columns if c in KEEP_COLUMNS or str(c).startswith("prob_")]]
