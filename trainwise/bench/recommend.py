"""The recommendation: the fastest variant that passes the quality gate, raises no numerics alarm
and fits the memory budget, with its speed-up and memory saving over the fp32 control, and the
reason every other variant was not chosen."""

from __future__ import annotations

from trainwise.bench.runner import FINISHED

GIB = 2**30


def rejection(row: dict, control: dict, budget_gib: float, tolerance: float) -> str | None:
    """Why `row` cannot be recommended, or None when it can."""
    if row["status"] not in FINISHED:
        return f"{row['status']}: {row.get('reason')}"
    if row["kind"] != "trainwise":
        return "the plain-PyTorch baseline (shows trainwise's overhead; not a configuration of trainwise)"
    if not row.get("tokens_per_s"):
        return "no timed steps"
    if row["quality_verdict"] == "fail":
        rise = row.get("val_loss_rise")
        return f"validation loss {rise:.1%} above the control, tolerance {tolerance:.0%} ({row.get('quality_detail')})"
    if row.get("health_issues"):
        return "numerics: " + "; ".join(row["health_issues"])
    mem = row.get("peak_memory_bytes")
    if budget_gib and mem is not None and mem > budget_gib * GIB:
        return f"peak memory {mem / GIB:.2f} GiB is over bench.memory_budget_gib = {budget_gib:g}"
    return None


def recommend(rows: list[dict], budget_gib: float, tolerance: float, device: str) -> dict:
    control = next((r for r in rows if r["is_control"]), None)
    if control is None or control["status"] not in FINISHED or not control.get("tokens_per_s"):
        return {"variant": None, "label": None, "reason": "the fp32 control did not finish, so nothing can be compared against it",
                "rejected": [{"label": r["label"], "variant": r["variant"], "reason": rejection(r, control or {}, budget_gib, tolerance)} for r in rows]}
    reasons = {r["config_hash"]: rejection(r, control, budget_gib, tolerance) for r in rows}
    eligible = [r for r in rows if reasons[r["config_hash"]] is None]
    best = max(eligible, key=lambda r: r["tokens_per_s"])
    rejected = []
    for r in sorted(rows, key=lambda r: -(r.get("tokens_per_s") or 0)):
        if r is best:
            continue
        faster = (r.get("tokens_per_s") or 0) > best["tokens_per_s"]
        reason = reasons[r["config_hash"]]
        if reason is None:  # eligible but slower than the chosen one
            reason = f"{best['tokens_per_s'] / r['tokens_per_s']:.2f}x slower than {best['label']}" + (" (the fp32 control)" if best is control else "")
        slower_than_control = r.get("tokens_per_s") and control["tokens_per_s"] > r["tokens_per_s"]
        if slower_than_control and r["status"] in FINISHED and r["kind"] == "trainwise" and best is not control:
            reason += f"; {control['tokens_per_s'] / r['tokens_per_s']:.1f}x slower than fp32 on this {device}"
        rejected.append({"label": r["label"], "variant": r["variant"], "faster_than_recommended": faster, "reason": f"{r['label']}: {reason}"})
    out = {
        "variant": best["variant"],
        "label": best["label"],
        "speedup_vs_fp32": best["tokens_per_s"] / control["tokens_per_s"],
        "memory_saving_vs_fp32": _saving(best.get("peak_memory_bytes"), control.get("peak_memory_bytes")),
        "activation_saving_vs_fp32": _saving(best.get("peak_activation_bytes"), control.get("peak_activation_bytes")),
        "median_step_ms": best["median_step_ms"],
        "control_median_step_ms": control["median_step_ms"],
        "final_val_loss": best["final_val_loss"],
        "control_final_val_loss": control["final_val_loss"],
        "quality_verdict": best["quality_verdict"],
        "quality_detail": best.get("quality_detail"),
        "rejected": rejected,
    }
    baseline = next((r for r in rows if r["kind"] == "baseline" and r.get("median_step_ms")), None)
    if baseline:
        out["trainwise_overhead_vs_plain_pytorch"] = control["median_step_ms"] / baseline["median_step_ms"] - 1
    if best.get("cost_per_run") is not None:
        out["cost_per_run"], out["control_cost_per_run"] = best["cost_per_run"], control.get("cost_per_run")
    return out


def _saving(x, base) -> float | None:
    return None if x is None or not base else 1 - x / base


def summary_line(rec: dict) -> str:
    if rec.get("variant") is None:
        return f"no recommendation: {rec['reason']}"
    mem = rec.get("memory_saving_vs_fp32")
    return (f"recommended: {rec['label']}: {rec['speedup_vs_fp32']:.2f}x the fp32 control's throughput"
            + (f", {mem:+.0%} peak memory saving" if mem is not None else "")
            + f", quality {rec['quality_verdict']} ({rec.get('quality_detail')})")
