"""From repeat results to one row per variant: speed with its spread, MFU, memory, time to target,
quality verdict against the fp32 control, numerics health, cost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trainwise.bench.grid import Variant
from trainwise.bench.runner import FINISHED

# which measured matmul peak (trainwise info) each policy's MFU is divided by
PEAK_DTYPE = {"fp32": "fp32", "bf16-mixed": "bf16", "bf16-true": "bf16", "fp16-mixed": "fp16", "fp8-tensorwise": "bf16", "fp8-rowwise": "bf16"}
PEAK_UNREPRESENTATIVE = "peak unrepresentative"
KEEP_COLUMNS = ["id", "loss", "correct", "n_positions", "label", "pred"]  # slices are not gated here: only the overall loss


def peak_dtype(v: Variant) -> str:
    """The dtype whose measured peak a variant's MFU is divided by (the baseline trains in fp32)."""
    return PEAK_DTYPE.get(v.cfg.precision.policy, "fp32") if v.kind == "trainwise" else "fp32"


def achieved_gflops(flops_per_step: float | None, step_ms: float | None) -> float | None:
    return flops_per_step / (step_ms / 1e3) / 1e9 if flops_per_step and step_ms else None


def mfu(flops_per_step: float | None, step_ms: float | None, policy: str, info: dict, gemm_gflops: float | None = None) -> tuple[float | None, str]:
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
        return achieved / gemm_gflops, (f"vs {dtype} peak {gemm_gflops:.1f} GFLOP/s measured on the model's own matmul shapes "
                                        f"(the square-matrix probe's {square:g} GFLOP/s would give {achieved / square:.0%}){fp8}")
    measured = f" and on its own matmul shapes ({gemm_gflops:.1f})" if gemm_gflops else " (its own matmul shapes were not measured)"
    return None, f"{PEAK_UNREPRESENTATIVE}: the model ran {achieved:.1f} GFLOP/s, above the {dtype} peak of the square-matrix probe ({square:g}){measured}{fp8}"


def time_to_target(curve: list, target: float, step_ms: float | None) -> tuple[int | None, float | None]:
    """First validated step whose val loss <= target, and the training time to it (steps x median step)."""
    for step, loss in curve:
        if loss is not None and loss <= target:
            return step, (step * step_ms / 1e3 if step_ms else None)
    return None, None


def aggregate(v: Variant, repeats: list[dict], info: dict, cost_per_hour: float, timed: dict | None = None) -> dict:
    """One row per variant. Its speed (median step ms, spread, tokens/s, MFU) comes from the timing
    phase (`timed`: this variant's entry of timing.json) when it was timed there, else from the
    training run's own steps; `timing_source` says which."""
    first = repeats[0] if repeats else {"status": "not run", "reason": "no repeat ran"}
    ok = [r for r in repeats if r.get("status") in FINISHED and r.get("median_step_ms")]
    policy = v.cfg.precision.policy
    row = {"variant": v.overrides, "label": v.label, "kind": v.kind, "is_control": v.is_control, "config_hash": v.hash,
           "status": first.get("status"), "reason": first.get("reason"), "precision": policy, "ac": v.cfg.memory.ac,
           "median_step_ms": None, "tokens_per_s": None, "mfu": None, "peak_activation_bytes": first.get("peak_activation_bytes"),
           "peak_memory_bytes": first.get("peak_memory_bytes"), "max_memory_allocated": first.get("max_memory_allocated"),
           "max_memory_reserved": first.get("max_memory_reserved"), "final_val_loss": first.get("final_val_loss"),
           "final_train_loss": first.get("final_train_loss"), "quality_verdict": "not compared", "repeats": len(repeats)}
    if not ok:
        return row
    row.update(speed_fields(ok[0], timed))
    step_ms = row["median_step_ms"]
    value, label = mfu(first.get("flops_per_step"), step_ms, policy if v.kind == "trainwise" else "fp32", info,
                       (timed or {}).get("gemm_gflops") if (timed or {}).get("peak_dtype") == peak_dtype(v) else None)
    row.update({"mfu": value, "mfu_basis": label, "mfu_note": PEAK_UNREPRESENTATIVE if label.startswith(PEAK_UNREPRESENTATIVE) else None,
                "throughput_unit": first.get("throughput_unit", "tokens"), "flops_per_step": first.get("flops_per_step"), "steps": first.get("steps"),
                "train_time_s": step_ms * (first.get("steps") or 0) / 1e3, "skipped_steps": first.get("skipped_steps", 0),
                "alarms": first.get("alarms", []), "curves": first.get("curves", {}), "memory_breakdown": first.get("memory_breakdown")})
    row["health_issues"] = health_issues(first, v.cfg.precision.max_skipped_share)
    if cost_per_hour:
        row["cost_per_run"] = row["train_time_s"] / 3600 * cost_per_hour
    return row


def speed_fields(trained: dict, timed: dict | None) -> dict:
    """median_step_ms, its spread, tokens_per_s and where they come from: the timing phase's
    interleaved rounds, or (a variant not timed there) the training run's timed steps."""
    units = trained["tokens_per_s"] * trained["median_step_ms"] / 1e3 if trained.get("tokens_per_s") else None
    if timed and timed.get("median_step_ms"):
        ms, units = timed["median_step_ms"], timed.get("units_per_step") or units
        n_rounds = sum(1 for r in timed.get("step_ms", []) if r)
        out = {"median_step_ms": ms, "step_ms_min": timed["min_step_ms"], "step_ms_max": timed["max_step_ms"],
               "step_ms_per_round": timed.get("round_median_ms"), "timed_steps": timed.get("timed_steps"),
               "timing_source": f"timing phase: {timed.get('timed_steps')} steps in {n_rounds} interleaved rounds",
               "speed_ratio_vs_control": timed.get("speed_ratio_vs_control"), "gemm_peak_gflops": timed.get("gemm_gflops")}
    else:
        ms = trained["median_step_ms"]
        why = (timed or {}).get("reason") or ("the timing phase did not run" if timed is None else "no timed round")
        out = {"median_step_ms": ms, "step_ms_min": trained.get("min_step_ms"), "step_ms_max": trained.get("max_step_ms"),
               "timed_steps": trained.get("timed_steps"), "timing_source": f"training run ({why}): not interleaved, so not comparable across variants on a busy machine"}
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
        issues.append(f"{summary.get('skipped_steps')} of {summary.get('steps')} steps ({share:.0%}) skipped as non-finite, above precision.max_skipped_share = {max_skipped_share:.0%}")
    return issues


def add_time_to_target(rows: list[dict], target: float) -> None:
    for row in rows:
        row["target_val_loss"] = target
        step, secs = time_to_target(row.get("curves", {}).get("val", []), target, row.get("median_step_ms"))
        row["steps_to_target"], row["time_to_target_s"] = step, secs


def add_quality(rows: list[dict], dirs: dict[str, Path], tolerance: float, confidence: float, task_hint: str | None = None) -> None:
    """Paired gate on the same validation examples: fail when the one-sided lower confidence bound
    of the loss rise over the fp32 control exceeds tolerance x the control's loss."""
    from trainwise.evaluate.compare import compare_predictions
    from trainwise.evaluate.gate import Gate, Rule

    control = next((r for r in rows if r["is_control"]), None)
    if control is None or control["status"] not in FINISHED or not (dirs[control["config_hash"]] / "predictions.parquet").is_file():
        for r in rows:
            r["quality_verdict"], r["quality_detail"] = "not compared", "the fp32 control did not finish"
        return
    base = _frame(dirs[control["config_hash"]])
    control_loss = control["final_val_loss"]
    tol_abs = tolerance * control_loss
    metric = "loss" if "loss" in base.columns else "log_loss"
    gate = Gate([Rule(metric, tol_abs, confidence)])
    control["quality_verdict"], control["quality_detail"] = "control", "the fp32 control"
    for r in rows:
        if r is control or r["status"] not in FINISHED:
            continue
        rise = (r["final_val_loss"] - control_loss) / control_loss if r.get("final_val_loss") is not None else None
        r["val_loss_rise"] = rise
        path = dirs[r["config_hash"]] / "predictions.parquet"
        if not path.is_file():  # the baseline row: no predictions, loss only
            r["quality_verdict"], r["quality_detail"] = "not compared", f"validation loss {_pct(rise)} vs the control (no paired predictions)"
            continue
        cmp = compare_predictions(base, _frame(dirs[r["config_hash"]]), gate=gate, n_boot=1000, seed=0)
        r["quality_verdict"] = "pass" if cmp.passed else "fail"
        rule = cmp.rules[0]
        bound = rule.get("lower_bound")
        r["quality_detail"] = (f"validation loss {_pct(rise)} vs the control (paired {confidence:.0%} lower bound of the rise "
                               f"{_pct(bound / control_loss if bound is not None else None)}), tolerance {tolerance:.0%}")


def _pct(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1%}"


def _frame(d: Path) -> pd.DataFrame:
    df = pd.read_parquet(d / "predictions.parquet")
    return df[[c for c in df.columns if c in KEEP_COLUMNS or str(c).startswith("prob_")]]
