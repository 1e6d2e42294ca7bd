"""The recommendation, and the reason every other variant was not chosen (docs/bench.md, "Recommendation").

Eligible: finished, trained by trainwise, quality `pass` (or the control itself), no numerics issue
at the end of its run, within bench.memory_budget_gib. Among them, the answer must not hang on
noise, so that two benches of the same machine give the same one:

1. the fastest eligible variant by median step is found;
2. every eligible variant whose speed cannot be told apart from it stays in the running: the
   fastest is *clearly* faster only when the lower bound of the speed ratio exceeds
   (1 + bench.min_gain) x (1 + the speed noise floor). The intervals are the timing phase's
   paired per-round ratios to the control when it gave them (no floor: pairing cancels drift),
   else 95% order-statistic intervals of each training run's median step, and the floor is how
   far the control's other seeds' median step lies from the control's: the same work timed at
   another moment, which is what a shared machine's drift does to two runs;
3. of those, the simplest is recommended: fewest fields changed from the control, then the
   simpler precision (fp32, bf16-mixed, fp16-mixed, bf16-true, fp8), then the simpler activation
   checkpointing, then the lower peak memory, then the label.

Inconclusive variants are listed apart, with what would settle them; failing ones are rejected.
"""

from __future__ import annotations

from statistics import median

from scipy import stats

from trainwise.bench.runner import FINISHED

GIB = 2**30
PRECISION_RANK = {"fp32": 0, "bf16-mixed": 1, "fp16-mixed": 2, "bf16-true": 3, "fp8-tensorwise": 4, "fp8-rowwise": 4}
AC_RANK = {"none": 0, "selective": 1, "every-n": 2, "full": 3, "auto": 4}


def median_interval(samples: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval of the median from order statistics (binomial(n, 1/2) ranks).

    >>> median_interval(list(range(1, 21)))
    (6, 15)
    """
    x = sorted(samples)
    n = len(x)
    if n == 0:
        return None
    k = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))  # ranks below k cover at most (1-confidence)/2
    return (x[max(k - 1, 0)], x[min(n - k, n - 1)]) if k >= 1 else (x[0], x[-1])


def speed_intervals(rows: list[dict]) -> tuple[dict[str, tuple[float, float]], float, str]:
    """(interval of each finished variant's median step, in one unit for all; the speed noise floor;
    where they come from). From the timing phase's paired per-round ratios to the control
    (`speed_ratio_vs_control.ci95`; the control is 1) when every candidate has one: paired rounds
    cancel the drift of a shared machine, so no floor is added. Otherwise from each training run's
    timed steps (`step_ms_samples`), with the floor measured on the control's other seeds."""
    control = next(r for r in rows if r["is_control"])
    cands = [r for r in rows if r["kind"] == "trainwise" and r["status"] in FINISHED and r.get("median_step_ms")]
    paired = {r["config_hash"]: (r.get("speed_ratio_vs_control") or {}).get("ci95") for r in cands if r is not control}
    if paired and all(paired.values()):
        return {**{h: tuple(ci) for h, ci in paired.items()}, control["config_hash"]: (1.0, 1.0)}, 0.0, "timing phase (paired rounds)"
    out = {r["config_hash"]: median_interval(r.get("step_ms_samples") or []) or (r["median_step_ms"], r["median_step_ms"]) for r in cands}
    return out, speed_floor(rows), "training runs' timed steps"


def clearly_faster(fast: dict, slow: dict, iv: dict, min_gain: float, floor: float = 0.0) -> bool:
    """The lower bound of fast's speed over slow's (slow's fastest plausible median step over fast's
    slowest) exceeds 1 + min_gain, beyond what two runs of the same config differ by (`floor`)."""
    return iv[slow["config_hash"]][0] / iv[fast["config_hash"]][1] > (1 + min_gain) * (1 + floor)


def speed_floor(rows: list[dict]) -> float:
    """How far the median step of the control's runs with other seeds lies from the control's own
    (relative): the same work timed at another moment of a shared machine. 0 without seeds."""
    control = next(r for r in rows if r["is_control"])
    seeds = [r["step_ms_samples"] for r in rows if r.get("kind") == "control-seed" and r["status"] in FINISHED and r.get("step_ms_samples")]
    if not control.get("step_ms_samples") or not seeds:
        return 0.0
    m = median(control["step_ms_samples"])
    return max(max(median(s), m) / min(median(s), m) - 1 for s in seeds)


def complexity(row: dict, control: dict) -> tuple:
    """Sort key of simplicity: numerics first (fp32 computes like the control; AC recomputes exactly),
    then activation checkpointing, then other fields changed from the control, then memory and label."""
    others = [k for k, v in row["variant"].items() if k not in ("precision.policy", "memory.ac") and control["variant"].get(k) != v]
    return (PRECISION_RANK.get(row.get("precision"), 5), AC_RANK.get(row.get("ac"), 5), len(others), row.get("peak_memory_bytes") or 0, row["label"])


def rejection(row: dict, budget_gib: float) -> str | None:
    """Why `row` cannot be recommended, or None when it can."""
    if row["status"] not in FINISHED:
        return f"{row['status']}: {row.get('reason')}"
    if row["kind"] == "baseline":
        return "the plain-PyTorch baseline (shows trainwise's overhead; not a configuration of trainwise)"
    if row["kind"] == "control-seed":
        return "the fp32 control with another seed (measures the noise floor; not a candidate)"
    if not row.get("tokens_per_s"):
        return "no timed steps"
    if row["quality_verdict"] == "fail":
        return f"quality fail: {row.get('quality_detail')}"
    if row["quality_verdict"] == "inconclusive":
        return f"quality inconclusive: {row.get('quality_detail')}; {row.get('quality_settle')}"
    if row["quality_verdict"] not in ("pass", "control"):
        return f"quality {row['quality_verdict']}: {row.get('quality_detail')}"
    if row.get("health_issues"):
        return "numerics: " + "; ".join(row["health_issues"])
    mem = row.get("peak_memory_bytes")
    if budget_gib and mem is not None and mem > budget_gib * GIB:
        return f"peak memory {mem / GIB:.2f} GiB is over bench.memory_budget_gib = {budget_gib:g}"
    return None


def choose(eligible: list[dict], control: dict, iv: dict, min_gain: float, floor: float) -> tuple[dict, dict]:
    """(the recommended row, the fastest row): the simplest of the variants whose speed cannot be told apart from the fastest's."""
    fastest = min(eligible, key=lambda r: (r["median_step_ms"], complexity(r, control)))
    tied = [r for r in eligible if r is fastest or not clearly_faster(fastest, r, iv, min_gain, floor)]
    return min(tied, key=lambda r: complexity(r, control)), fastest


def recommend(rows: list[dict], budget_gib: float, tolerance: float, device: str, min_gain: float = 0.10) -> dict:
    control = next((r for r in rows if r["is_control"]), None)
    if control is None or control["status"] not in FINISHED or not control.get("tokens_per_s"):
        return {"variant": None, "label": None, "reason": "the fp32 control did not finish, so nothing can be compared against it",
                "rejected": [{"label": r["label"], "variant": r["variant"], "reason": f"{r['label']}: {rejection(r, budget_gib)}"} for r in rows if r is not control],
                "inconclusive": []}
    reasons = {r["config_hash"]: rejection(r, budget_gib) for r in rows}
    eligible = [r for r in rows if reasons[r["config_hash"]] is None]
    if not eligible:
        return {"variant": None, "label": None, "reason": "no variant is eligible (not even the control: " + reasons[control["config_hash"]] + ")",
                "rejected": [{"label": r["label"], "variant": r["variant"], "reason": f"{r['label']}: {reasons[r['config_hash']]}"} for r in rows],
                "inconclusive": []}
    iv, floor, source = speed_intervals(rows)
    best, fastest = choose(eligible, control, iv, min_gain, floor)
    rejected, inconclusive = [], []
    for r in sorted(rows, key=lambda r: -(r.get("tokens_per_s") or 0)):
        if r is best:
            continue
        reason = reasons[r["config_hash"]] or _slower_reason(r, best, fastest, iv, min_gain, floor)
        slower_than_control = r.get("tokens_per_s") and control["tokens_per_s"] > r["tokens_per_s"]
        if slower_than_control and r["status"] in FINISHED and r["kind"] == "trainwise" and best is not control:
            reason += f"; {control['tokens_per_s'] / r['tokens_per_s']:.1f}x slower than fp32 on this {device}"
        entry = {"label": r["label"], "variant": r["variant"], "faster_than_recommended": (r.get("tokens_per_s") or 0) > best["tokens_per_s"],
                 "reason": f"{r['label']}: {reason}"}
        if r["status"] in FINISHED and r.get("quality_verdict") == "inconclusive":
            inconclusive.append({**entry, "settle": r.get("quality_settle"), "quality_detail": r.get("quality_detail")})
        else:
            rejected.append(entry)
    (c_lo, c_hi), (b_lo, b_hi) = iv[control["config_hash"]], iv[best["config_hash"]]
    out = {
        "variant": best["variant"],
        "label": best["label"],
        "speedup_vs_fp32": best["tokens_per_s"] / control["tokens_per_s"],
        "speedup_interval_vs_fp32": [c_lo / b_hi, c_hi / b_lo],
        "speed_source": source,
        "memory_saving_vs_fp32": _saving(best.get("peak_memory_bytes"), control.get("peak_memory_bytes")),
        "activation_saving_vs_fp32": _saving(best.get("peak_activation_bytes"), control.get("peak_activation_bytes")),
        "median_step_ms": best["median_step_ms"],
        "control_median_step_ms": control["median_step_ms"],
        "final_val_loss": best["final_val_loss"],
        "control_final_val_loss": control["final_val_loss"],
        "quality_verdict": best["quality_verdict"],
        "quality_detail": best.get("quality_detail"),
        "rule": "the simplest passing variant whose speed cannot be told apart from the fastest passing one's",
        "speed_noise_floor": floor,
        "rejected": rejected,
        "inconclusive": inconclusive,
    }
    baseline = next((r for r in rows if r["kind"] == "baseline" and r.get("median_step_ms")), None)
    if baseline:
        out["trainwise_overhead_vs_plain_pytorch"] = control["median_step_ms"] / baseline["median_step_ms"] - 1
    if best.get("cost_per_run") is not None:
        out["cost_per_run"], out["control_cost_per_run"] = best["cost_per_run"], control.get("cost_per_run")
    return out


def _slower_reason(r: dict, best: dict, fastest: dict, iv: dict, min_gain: float, floor: float) -> str:
    """Why an eligible variant was not the one chosen."""
    need = (1 + min_gain) * (1 + floor)
    if r is fastest:
        lo = iv[best["config_hash"]][0] / iv[r["config_hash"]][1]
        return (f"{best['median_step_ms'] / r['median_step_ms']:.2f}x the speed of {best['label']}, not clearly faster "
                f"(lower bound {lo:.2f}x, needs > {need:.2f}x: bench.min_gain {min_gain:.0%} beyond the speed noise floor {floor:.1%}): "
                f"the simpler {best['label']} is recommended")
    if not clearly_faster(fastest, r, iv, min_gain, floor):
        return f"its speed cannot be told apart from {fastest['label']}'s, and {best['label']} is simpler"
    return f"{best['tokens_per_s'] / r['tokens_per_s']:.2f}x slower than {best['label']}" + (" (the fp32 control)" if best.get("is_control") else "")


def _saving(x, base) -> float | None:
    return None if x is None or not base else 1 - x / base


def summary_line(rec: dict) -> str:
    if rec.get("variant") is None:
        return f"no recommendation: {rec['reason']}"
    mem = rec.get("memory_saving_vs_fp32")
    return (f"recommended: {rec['label']}: {rec['speedup_vs_fp32']:.2f}x the fp32 control's throughput"
            + (f", {mem:+.0%} peak memory saving" if mem is not None else "")
            + f", quality {rec['quality_verdict']} ({rec.get('quality_detail')})")
