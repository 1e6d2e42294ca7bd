"""`trainwise fit-batch`: the largest micro-batch, and the AC mode, that fit a memory budget.

For each AC mode the estimator is traced at micro-batches 1 and 2; a step's memory is affine in
the micro-batch (parameters and optimizer state fixed, activations and temporaries proportional),
so the line through those two points predicts the largest micro-batch under the budget. That
prediction is traced again and stepped down until the trace fits, so the answer rests on a trace
at the answer itself, not on the line. The answer is the largest micro-batch any mode reaches
(capped at the per-process share of the global batch), with the cheapest mode that reaches it,
then confirmed by measuring one real step (real tensors, same tracker) and stepped down if needed.
"""

from __future__ import annotations

from trainwise.config import Config
from trainwise.train.ac import AC_COST_ORDER
from trainwise.train.autoac import check_budget_reachable
from trainwise.train.estimate import GIB, apply_data_parallel, estimate_memory, trace_step


def _peak(cfg, workload, mode: str, mb: int, world_size: int) -> int:
    return estimate_memory(cfg, workload, ac_mode=mode, micro_batch_size=mb, world_size=world_size)["peak_memory_bytes"]


def largest_fitting(cfg: Config, workload, mode: str, budget: int, max_mb: int, world_size: int = 1) -> tuple[int, int]:
    """(largest micro-batch <= max_mb whose traced peak fits `budget`, its peak); (0, peak at 1) if none."""
    p1 = _peak(cfg, workload, mode, 1, world_size)
    if p1 > budget:
        return 0, p1
    if max_mb == 1:
        return 1, p1
    p2 = _peak(cfg, workload, mode, 2, world_size)
    slope = max(p2 - p1, 1)
    mb = max(1, min(max_mb, 1 + (budget - p1) // slope))
    peak = p2 if mb == 2 else _peak(cfg, workload, mode, mb, world_size)
    while peak > budget and mb > 1:  # the line was optimistic: step down 5% at a time and trace again
        mb = max(1, min(mb - 1, int(mb * 0.95)))
        peak = _peak(cfg, workload, mode, mb, world_size)
    return mb, peak


def measure_peak(cfg: Config, workload, mode: str, mb: int, world_size: int = 1) -> int:
    traced = trace_step(cfg, workload, ac_mode=mode, micro_batch_size=mb, fake=False)
    return apply_data_parallel(traced, cfg.parallel.strategy, world_size, cfg.parallel.reshard_after_forward)["peak_memory_bytes"]


def fit_batch(cfg: Config, workload, budget_gib: float, max_micro_batch: int = 0, world_size: int = 1, confirm: bool = True) -> dict:
    """Largest micro-batch and cheapest AC mode under `budget_gib`, estimated then measured."""
    budget = int(budget_gib * GIB)
    check_budget_reachable(cfg, workload, budget, world_size)
    max_mb = max_micro_batch or max(1, cfg.train.global_batch_size // world_size)
    per_mode = {}
    for mode in AC_COST_ORDER:
        mb, peak = largest_fitting(cfg, workload, mode, budget, max_mb, world_size)
        per_mode[mode] = {"micro_batch_size": mb, "estimated_peak_bytes": peak}
        if mb == max_mb:
            break  # costlier modes cannot fit more than the cap
    best_mb = max(v["micro_batch_size"] for v in per_mode.values())
    mode = next(m for m in per_mode if per_mode[m]["micro_batch_size"] == best_mb)
    out = {"budget_gib": budget_gib, "micro_batch_size": best_mb, "ac": mode,
           "estimated_peak_bytes": per_mode[mode]["estimated_peak_bytes"], "max_micro_batch": max_mb, "per_mode": per_mode,
           "measured_peak_bytes": None, "note": ""}
    if confirm:
        measured = measure_peak(cfg, workload, mode, best_mb, world_size)
        while measured > budget and best_mb > 1:
            best_mb = max(1, int(best_mb * 0.9))
            out["note"] = f"measurement was over the budget; stepped down to micro-batch {best_mb}"
            measured = measure_peak(cfg, workload, mode, best_mb, world_size)
        out["micro_batch_size"], out["measured_peak_bytes"] = best_mb, measured
    return out
