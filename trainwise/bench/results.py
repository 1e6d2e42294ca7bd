"""From repeat results to one row per variant: speed with its spread, MFU, memory, time to target,
quality verdict against the fp32 control, numerics health, cost."""

from __future__ import annotations

from pathlib import Path
from statistics import median

import pandas as pd

from trainwise.bench.grid import Variant
from trainwise.bench.runner import FINISHED

# which measured matmul peak (trainwise info) each policy's MFU is divided by
PEAK_DTYPE = {"fp32": "fp32", "bf16-mixed": "bf16", "bf16-true": "bf16", "fp16-mixed": "fp16", "fp8-tensorwise": "bf16", "fp8-rowwise": "bf16"}
KEEP_COLUMNS = ["id", "loss", "correct", "n_positions", "label", "pred"]  # slices are not gated here: only the overall loss


def mfu(flops_per_step: float | None, step_ms: float | None, policy: str, info: dict) -> tuple[float | None, str]:
    """Model FLOP/s over the measured peak matmul FLOP/s of the policy's dtype on this machine.
    FP8 is divided by the bf16 peak ("bf16-equivalent"): no fp8 peak is measured off an SM89+ GPU."""
    dtype = PEAK_DTYPE.get(policy, "fp32")
    peak = (info.get("matmul_gflops") or {}).get(dtype)
    label = f"vs {dtype} peak {peak} GFLOP/s" + (" (bf16-equivalent for fp8)" if policy.startswith("fp8") else "")
    if not flops_per_step or not step_ms or not peak:
        return None, label
    return flops_per_step / (step_ms / 1e3) / (peak * 1e9), label


def time_to_target(curve: list, target: float, step_ms: float | None) -> tuple[int | None, float | None]:
    """First validated step whose val loss <= target, and the training time to it (steps x median step)."""
    for step, loss in curve:
        if loss is not None and loss <= target:
            return step, (step * step_ms / 1e3 if step_ms else None)
    return None, None


def aggregate(v: Variant, repeats: list[dict], info: dict, cost_per_hour: float) -> dict:
    first = repeats[0] if repeats else {"status": "not run", "reason": "no repeat ran"}
    ok = [r for r in repeats if r.get("status") in FINISHED and r.get("median_step_ms")]
    policy = v.cfg.precision.policy
    row = {"variant": v.overrides, "label": v.label, "kind": v.kind, "is_control": v.is_control, "config_hash": v.hash,
           "status": first.get("status"), "reason": first.get("reason"), "precision": policy, "ac": v.cfg.memory.ac,
           "median_step_ms": None, "tokens_per_s": None, "mfu": None, "peak_activation_bytes": first.get("peak_activation_bytes"),
           "peak_memory_bytes": first.get("peak_memory_bytes"), "final_val_loss": first.get("final_val_loss"),
           "final_train_loss": first.get("final_train_loss"), "quality_verdict": "not compared", "repeats": len(repeats),
           "val_examples": first.get("val_examples"), "pruned": first.get("prune")}
    if not ok:
        return row
    per_repeat = [r["median_step_ms"] for r in ok]
    step_ms = median(per_repeat)
    tps = median(r["tokens_per_s"] for r in ok if r.get("tokens_per_s"))
    # the spread: over the repeats' medians when there are several, else over the steps of the one run
    lo, hi = (min(per_repeat), max(per_repeat)) if len(ok) > 1 else (ok[0].get("min_step_ms"), ok[0].get("max_step_ms"))
    value, label = mfu(first.get("flops_per_step"), step_ms, policy if v.kind == "trainwise" else "fp32", info)
    row.update({"median_step_ms": step_ms, "step_ms_min": lo, "step_ms_max": hi, "step_ms_per_repeat": per_repeat,
                "tokens_per_s": tps, "throughput_unit": first.get("throughput_unit", "tokens"), "mfu": value, "mfu_basis": label,
                "flops_per_step": first.get("flops_per_step"), "steps": first.get("steps"),
                "train_time_s": step_ms * (first.get("steps") or 0) / 1e3, "skipped_steps": first.get("skipped_steps", 0),
                "alarms": first.get("alarms", []), "curves": first.get("curves", {}), "memory_breakdown": first.get("memory_breakdown")})
    row["step_ms_samples"] = [ms for r in ok for ms in r.get("step_ms_samples") or []]  # every timed step: the speed's noise
    if v.kind == "control-seed":  # trained for the noise floor: its speed is not a result (its step times show run-to-run drift)
        row.update({"median_step_ms": None, "tokens_per_s": None, "mfu": None, "timed": False})
    row["health_issues"] = health_issues(first, v.cfg.precision.max_skipped_share)
    if cost_per_hour:
        row["cost_per_run"] = row["train_time_s"] / 3600 * cost_per_hour
    return row


def health_issues(summary: dict, max_skipped_share: float) -> list[str]:
    """Numerics problems as they stand at the end of the run: a loss-scale collapse, or a share of
    skipped steps above precision.max_skipped_share. (An alarm raised early, such as GradScaler's
    usual overflow on fp16's first step counted at step 10, is in `alarms` but is not an issue
    when the final share is below the limit.)"""
    issues = [a for a in summary.get("alarms", []) if a.startswith("loss-scale collapse")][:1]
    share = summary.get("skipped_share") or 0.0
    if share > max_skipped_share:
        issues.append(f"{summary.get('skipped_steps')} of {summary.get('steps')} steps ({share:.0%}) skipped as non-finite, above precision.max_skipped_share = {max_skipped_share:.0%}")
    return issues


def add_time_to_target(rows: list[dict], target: float) -> None:
    for row in rows:
        row["target_val_loss"] = target
        step, secs = time_to_target(row.get("curves", {}).get("val", []), target, row.get("median_step_ms"))
        row["steps_to_target"], row["time_to_target_s"] = step, secs


def add_quality(rows: list[dict], dirs: dict[str, Path], tolerance: float, confidence: float, seed_hashes: list[str] = (),
                examples_per_batch: int = 1, eval_batches: int = 1) -> dict:
    """Three-valued verdicts against the fp32 control on the same validation examples, with the
    control's seed-to-seed noise floor in the margin (trainwise.bench.quality). Returns what the
    report shows of the floor: {'measured', 'seeds', 'metric', 'primary_metric', 'margin', 'tolerance_abs',
    'control_loss', 'per_metric': {metric: {'per_seed', 'floor'}}} ('reason' when not measured)."""
    from trainwise.bench.quality import GATE_METRIC, PRIMARY_METRIC, QualityRule, judge, noise_floor
    from trainwise.evaluate.compare import infer_task

    control = next((r for r in rows if r["is_control"]), None)
    if control is None or control["status"] not in FINISHED or not (dirs[control["config_hash"]] / "predictions.parquet").is_file():
        for r in rows:
            r["quality_verdict"], r["quality_detail"] = "not compared", "the fp32 control did not finish"
        return {"measured": False, "reason": "the fp32 control did not finish"}
    base = _frame(dirs[control["config_hash"]])
    task = infer_task(base, "control")
    metric, primary = GATE_METRIC[task], PRIMARY_METRIC[task]
    by_hash = {r["config_hash"]: r for r in rows}
    seed_rows = [by_hash[h] for h in seed_hashes[1:] if h in by_hash]
    seed_frames = [base] + [_frame(dirs[r["config_hash"]]) for r in seed_rows
                            if r["status"] in FINISHED and (dirs[r["config_hash"]] / "predictions.parquet").is_file()]
    floor = noise_floor(seed_frames, task, confidence)
    control_loss = control["final_val_loss"]
    floor_abs = floor[metric]["floor"] if floor else 0.0
    margin = tolerance * control_loss + floor_abs
    info = {"measured": floor is not None, "seeds": len(seed_frames), "metric": metric, "primary_metric": primary,
            "margin": margin, "tolerance_abs": tolerance * control_loss, "control_loss": control_loss, **({"per_metric": floor} if floor else {})}
    if floor is None:
        info["reason"] = (f"bench.control_seeds = {len(seed_hashes)}: one seed, no floor" if len(seed_hashes) < 2
                          else "the control's other seed(s) did not finish: " + "; ".join(f"{r['label']}: {r['status']}" for r in seed_rows))
    rule = QualityRule(metric, primary, margin, control_loss, tolerance, floor_abs, confidence, examples_per_batch, eval_batches)
    control["quality_verdict"], control["quality_detail"] = "control", "the fp32 control"
    for r in seed_rows:
        r["quality_verdict"], r["quality_detail"] = "noise floor", f"the control with another seed: validation loss {_pct(_rise(r, control_loss))} vs the control"
    for r in rows:
        if r is control or r in seed_rows:
            continue
        if r["status"] not in FINISHED:
            r["quality_verdict"], r["quality_detail"] = "not compared", f"{r['status']}: no quality claim"
            continue
        r["val_loss_rise"] = rise = _rise(r, control_loss)
        path = dirs[r["config_hash"]] / "predictions.parquet"
        if not path.is_file():  # the baseline row: no predictions, loss only
            r["quality_verdict"], r["quality_detail"] = "not compared", f"validation loss {_pct(rise)} vs the control (no paired predictions)"
            continue
        r.update(judge(base, _frame(dirs[r["config_hash"]]), rule, rise, r.get("val_examples")))
    return info


def _rise(row: dict, control_loss: float) -> float | None:
    return (row["final_val_loss"] - control_loss) / control_loss if row.get("final_val_loss") is not None and control_loss else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1%}"


def _frame(d: Path) -> pd.DataFrame:
    df = pd.read_parquet(d / "predictions.parquet")
    return df[[c for c in df.columns if c in KEEP_COLUMNS or str(c).startswith("prob_")]]
