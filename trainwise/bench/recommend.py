"""The recommendation, and the reason every other variant was not chosen (docs/bench.md, "Recommendation").

Eligible: finished, trained by trainwise, quality `pass` (or the control itself), no numerics issue
at the end of its run, within bench.memory_budget_gib, and its speed means something on this device
(emulated fp8 is there for its quality only). Among them, the answer must not hang on noise, so
that two benches of the same machine give the same one:

1. the fastest eligible variant by the speed evidence (trainwise.bench.speed) is found;
2. every eligible variant whose speed cannot be told apart from it stays in the running: the
   fastest is *clearly* faster only when the lower bound of the speed ratio exceeds
   (1 + bench.min_gain) x (1 + the speed noise floor); when the timing phase says the machine was
   too busy for any ratio, no variant is clearly faster than another;
3. of those, the simplest is recommended: the simpler precision (fp32, bf16-mixed, fp16-mixed,
   bf16-true, fp8), then the simpler activation checkpointing, then fewer other fields changed
   from the control, then the lower peak memory, then the label.

Inconclusive variants are listed apart, with what would settle them; failing ones are rejected.
Speed figures ("2.1x slower than fp32") appear only where the evidence supports them.
"""

from __future__ import annotations

from trainwise.bench.runner import FINISHED
from trainwise.bench.speed import (  # noqa: F401  (median_interval: re-exported)
    SpeedEvidence,
    median_interval,
    speed_evidence,
)

GIB = 2**30
PRECISION_RANK = {"fp32": 0, "bf16-mixed": 1, "fp16-mixed": 2, "bf16-true": 3, "fp8-tensorwise": 4, "fp8-rowwise": 4}
AC_RANK = {"none": 0, "selective": 1, "every-n": 2, "full": 3, "auto": 4}
RULE = "the simplest passing variant whose speed cannot be told apart from the fastest passing one's"


def complexity(row: dict, control: dict) -> tuple:
    """Sort key of simplicity: numerics first (fp32 computes like the control; AC recomputes exactly),
    then activation checkpointing, then other fields changed from the control, then memory and label."""
    others = [
        k
        for k, v in row["variant"].items()
        if k not in ("precision.policy", "memory.ac") and control["variant"].get(k) != v
    ]
    return (
        PRECISION_RANK.get(row.get("precision"), 5),
        AC_RANK.get(row.get("ac"), 5),
        len(others),
        row.get("peak_memory_bytes") or 0,
        row["label"],
    )


def rejection(row: dict, budget_gib: float) -> str | None:
    """Why `row` cannot be recommended, or None when it can."""
    return _not_a_candidate(row) or _quality_rejection(row) or _memory_rejection(row, budget_gib)


def _not_a_candidate(row: dict) -> str | None:
    """Why `row` is not a timed trainwise configuration to recommend (failed, a reference, emulated, untimed)."""
    if row["status"] not in FINISHED:
        return f"{row['status']}: {row.get('reason')}"
    if row["kind"] == "baseline":
        return "the plain-PyTorch baseline (shows trainwise's overhead; not a configuration of trainwise)"
    if row["kind"] == "control-seed":
        return "the fp32 control with another seed (measures the noise floor; not a candidate)"
    if row.get("emulated"):
        return (
            f"{row['emulated']}: quality {row['quality_verdict']} ({row.get('quality_detail')}); not recommended for "
            "speed on this machine"
        )
    if not row.get("median_step_ms"):
        return "no timed steps"
    return None


def _quality_rejection(row: dict) -> str | None:
    """Why `row`'s quality or numerics rule it out, or None when they pass."""
    if row["quality_verdict"] == "fail":
        return f"quality fail: {row.get('quality_detail')}"
    if row["quality_verdict"] == "inconclusive":
        return f"quality inconclusive: {row.get('quality_detail')}; {row.get('quality_settle')}"
    if row["quality_verdict"] not in ("pass", "control"):
        return f"quality {row['quality_verdict']}: {row.get('quality_detail')}"
    if row.get("health_issues"):
        return "numerics: " + "; ".join(row["health_issues"])
    return None


def _memory_rejection(row: dict, budget_gib: float) -> str | None:
    mem = row.get("peak_memory_bytes")
    if budget_gib and mem is not None and mem > budget_gib * GIB:
        return f"peak memory {mem / GIB:.2f} GiB is over bench.memory_budget_gib = {budget_gib:g}"
    return None


def choose(eligible: list[dict], control: dict, ev: SpeedEvidence, min_gain: float) -> tuple[dict, dict | None]:
    """(the recommended row, the fastest row or None without speed evidence): the simplest of the
    variants whose speed cannot be told apart from the fastest's."""
    timed = [r for r in eligible if ev.has(r)]
    fastest = min(timed, key=lambda r: (ev.point[r["config_hash"]], complexity(r, control))) if timed else None
    tied = [r for r in eligible if fastest is None or r is fastest or not ev.clearly_faster(fastest, r, min_gain)]
    return min(tied, key=lambda r: complexity(r, control)), fastest


def _no_recommendation(rows: list[dict], reasons: dict, why: str) -> dict:
    return {
        "variant": None,
        "label": None,
        "reason": why,
        "inconclusive": [],
        "rejected": [
            {"label": r["label"], "variant": r["variant"], "reason": f"{r['label']}: {reasons[r['config_hash']]}"}
            for r in rows
            if reasons[r["config_hash"]]
        ],
    }


def recommend(
    rows: list[dict],
    budget_gib: float,
    tolerance: float,
    device: str,
    min_gain: float = 0.10,
    timing: dict | None = None,
) -> dict:
    """`timing`: the timing phase's verdict {'reliable', 'unreliable_reason'} (None when it did not run)."""
    # Over 60 lines on purpose: the recommendation's steps in order (reject, choose, explain each loser, quote speed),
    # each a call; the rest is the returned dict.
    control = next((r for r in rows if r["is_control"]), None)
    reasons = {r["config_hash"]: rejection(r, budget_gib) for r in rows}
    if control is None or control["status"] not in FINISHED or not control.get("median_step_ms"):
        return _no_recommendation(
            rows, reasons, "the fp32 control did not finish, so nothing can be compared against it"
        )
    eligible = [r for r in rows if reasons[r["config_hash"]] is None]
    if not eligible:
        return _no_recommendation(
            rows, reasons, "no variant is eligible (not even the control: " + reasons[control["config_hash"]] + ")"
        )
    ev = speed_evidence(rows, timing)
    best, fastest = choose(eligible, control, ev, min_gain)
    rejected, inconclusive = [], []
    for r in sorted(rows, key=lambda r: ev.point.get(r["config_hash"], float("inf"))):
        if r is best:
            continue
        reason = reasons[r["config_hash"]] or _slower_reason(r, best, fastest, ev, min_gain)
        if ev.quotable(r, control) and r is not control and best is not control and ev.speedup(control, r) > 1:
            reason += f"; {ev.speedup(control, r):.1f}x slower than fp32 on this {device}"
        entry = {
            "label": r["label"],
            "variant": r["variant"],
            "faster_than_recommended": ev.has(r) and ev.speedup(r, best) > 1 if ev.has(best) else None,
            "reason": f"{r['label']}: {reason}",
        }
        if r["status"] in FINISHED and r.get("quality_verdict") == "inconclusive" and not r.get("emulated"):
            inconclusive.append({**entry, "settle": r.get("quality_settle"), "quality_detail": r.get("quality_detail")})
        else:
            rejected.append(entry)
    speed = ev.quotable(best, control)
    out = {
        "variant": best["variant"],
        "label": best["label"],
        "is_control": bool(best.get("is_control")),
        "speedup_vs_fp32": ev.speedup(best, control) if speed else None,
        "speedup_interval_vs_fp32": ev.speedup_interval(best, control) if speed else None,
        "speed_source": ev.source,
        "speed_noise_floor": ev.floor,
        "speed_unreliable": ev.unreliable
        or (None if speed else ev.not_quotable.get(best["config_hash"], "not measured comparably")),
        "memory_saving_vs_fp32": _saving(best.get("peak_memory_bytes"), control.get("peak_memory_bytes")),
        "activation_saving_vs_fp32": _saving(best.get("peak_activation_bytes"), control.get("peak_activation_bytes")),
        "median_step_ms": best["median_step_ms"],
        "control_median_step_ms": control["median_step_ms"],
        "final_val_loss": best["final_val_loss"],
        "control_final_val_loss": control["final_val_loss"],
        "quality_verdict": best["quality_verdict"],
        "quality_detail": best.get("quality_detail"),
        "rule": RULE,
        "rejected": rejected,
        "inconclusive": inconclusive,
    }
    if best.get("cost_per_run") is not None:
        out["cost_per_run"], out["control_cost_per_run"] = best["cost_per_run"], control.get("cost_per_run")
    return out


def _slower_reason(r: dict, best: dict, fastest: dict | None, ev: SpeedEvidence, min_gain: float) -> str:
    """Why an eligible variant was not the one chosen."""
    if ev.unreliable:
        return f"speeds not compared ({ev.unreliable}): the simplest passing variant, {best['label']}, is recommended"
    if not (ev.has(r) and ev.has(best)):
        return f"its speed was not measured comparably ({ev.source}): the simpler {best['label']} is recommended"
    need = (1 + min_gain) * (1 + ev.floor)
    why_not = ev.not_quotable.get(r["config_hash"]) or ev.not_quotable.get(best["config_hash"])
    if r is fastest:
        if why_not:
            return (
                f"not clearly faster than {best['label']} (its speed figure is not quoted: {why_not}): the simpler "
                f"{best['label']} is recommended"
            )
        lo = ev.speedup_interval(r, best)[0]
        return (
            f"{ev.speedup(r, best):.2f}x the speed of {best['label']}, not clearly faster (lower bound {lo:.2f}x, "
            f"needs > {need:.2f}x: bench.min_gain {min_gain:.0%} beyond the speed noise floor {ev.floor:.1%}; "
            f"{ev.source}): the simpler {best['label']} is recommended"
        )
    if fastest is not None and not ev.clearly_faster(fastest, r, min_gain):
        return f"its speed cannot be told apart from {fastest['label']}'s, and {best['label']} is simpler"
    if why_not:
        return (
            f"clearly slower than {best['label']} by the 95% interval of its paired rounds (figure not quoted: "
            f"{why_not})"
        )
    return f"{ev.speedup(best, r):.2f}x slower than {best['label']}" + (
        " (the fp32 control)" if best.get("is_control") else ""
    )


def _saving(x, base) -> float | None:
    return None if x is None or not base else 1 - x / base


def summary_line(rec: dict) -> str:
    if rec.get("variant") is None:
        return f"no recommendation: {rec['reason']}"
    if rec.get("is_control"):
        if rec.get("speed_unreliable"):
            return (
                f"recommended: {rec['label']}, the fp32 control itself, as the simplest passing variant: speeds not "
                f"compared ({rec['speed_unreliable']})"
            )
        return (
            f"recommended: {rec['label']}, the fp32 control itself: no variant that passed the quality gate was "
            "clearly faster"
        )
    mem = rec.get("memory_saving_vs_fp32")
    speed = (
        f"{rec['speedup_vs_fp32']:.2f}x the fp32 control's throughput"
        if rec.get("speedup_vs_fp32") is not None
        else f"speed not quoted ({rec.get('speed_unreliable') or 'not measured comparably'})"
    )
    return (
        f"recommended: {rec['label']}: {speed}"
        + (f", {mem:+.0%} peak memory saving" if mem is not None else "")
        + f", quality {rec['quality_verdict']} ({rec.get('quality_detail')})"
    )
