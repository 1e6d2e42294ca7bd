"""`trainwise fit-batch`: the largest micro-batch, and the AC mode, that fit a memory budget.

For each AC mode the estimator is traced at micro-batch 1 and at the cap, then the bracket is
narrowed (secant and bisection, `largest_fitting`) until the largest micro-batch whose own trace
fits is found: the answer rests on a trace at the answer itself, not on an extrapolation. The
answer is the largest micro-batch any mode reaches (capped at the per-process share of the global
batch and rounded down to a divisor of it, which the trainer needs), with the cheapest mode that
reaches it, then confirmed by measuring one real step (real tensors, same tracker) and stepped down if needed.
"""

from __future__ import annotations

from trainwise.config import Config
from trainwise.train.ac import AC_COST_ORDER
from trainwise.train.autoac import check_budget_reachable
from trainwise.train.estimate import GIB, apply_data_parallel, estimate_memory, trace_step


def _peak(cfg, workload, mode: str, mb: int, world_size: int) -> int:
    return estimate_memory(cfg, workload, ac_mode=mode, micro_batch_size=mb, world_size=world_size)["peak_memory_bytes"]


def largest_fitting(cfg: Config, workload, mode: str, budget: int, max_mb: int, world_size: int = 1) -> tuple[int, int]:
    """(largest micro-batch <= max_mb whose traced peak fits `budget`, its peak); (0, peak at 1) if none.

    A bracket [fits, does not fit] is narrowed by the secant through its ends (memory is close to
    affine in the micro-batch for large ones) alternating with bisection (it is not for small ones:
    fixed temporaries dominate there), so about log2(max_mb) traces at most.
    """
    lo, p_lo = 1, _peak(cfg, workload, mode, 1, world_size)
    if p_lo > budget:
        return 0, p_lo
    if max_mb == 1:
        return 1, p_lo
    hi, p_hi = max_mb, _peak(cfg, workload, mode, max_mb, world_size)
    if p_hi <= budget:
        return max_mb, p_hi
    secant = True
    while hi - lo > 1:
        guess = lo + int((budget - p_lo) * (hi - lo) / max(p_hi - p_lo, 1)) if secant else (lo + hi) // 2
        mb = min(max(guess, lo + 1), hi - 1)
        p = _peak(cfg, workload, mode, mb, world_size)
        if p <= budget:
            lo, p_lo = mb, p
        else:
            hi, p_hi = mb, p
        secant = not secant
    return lo, p_lo


def _largest_divisor(n: int, at_most: int) -> int:
    return max((d for d in range(1, at_most + 1) if n % d == 0), default=0)


def measure_peak(cfg: Config, workload, mode: str, mb: int, world_size: int = 1) -> int:
    traced = trace_step(cfg, workload, ac_mode=mode, micro_batch_size=mb, fake=False)
    return apply_data_parallel(traced, cfg.parallel.strategy, world_size, cfg.parallel.reshard_after_forward)[
        "peak_memory_bytes"
    ]


def fit_batch(
    cfg: Config, workload, budget_gib: float, max_micro_batch: int = 0, world_size: int = 1, confirm: bool = True
) -> dict:
    """Largest micro-batch and cheapest AC mode under `budget_gib`, estimated then measured."""
    budget = int(budget_gib * GIB)
    check_budget_reachable(cfg, workload, budget, world_size, field="--budget-gib")
    max_mb = max_micro_batch or max(1, cfg.train.global_batch_size // world_size)
    per_mode = {}
    for mode in AC_COST_ORDER:
        mb, peak = largest_fitting(cfg, workload, mode, budget, max_mb, world_size)
        per_mode[mode] = {"micro_batch_size": mb, "estimated_peak_bytes": peak}
        if mb == max_mb:
            break  # costlier modes cannot fit more than the cap
    per_rank = max(1, cfg.train.global_batch_size // world_size)
    for v in per_mode.values():  # the trainer needs micro-batch x world x accumulation = global batch
        v["largest_micro_batch"], v["micro_batch_size"] = (
            v["micro_batch_size"],
            _largest_divisor(per_rank, v["micro_batch_size"]),
        )
    best_mb = max(v["micro_batch_size"] for v in per_mode.values())
    mode = next(m for m in per_mode if per_mode[m]["micro_batch_size"] == best_mb)
    if best_mb:
        per_mode[mode]["estimated_peak_bytes"] = _peak(cfg, workload, mode, best_mb, world_size)
    out = {
        "budget_gib": budget_gib,
        "micro_batch_size": best_mb,
        "ac": mode,
        "estimated_peak_bytes": per_mode[mode]["estimated_peak_bytes"],
        "max_micro_batch": max_mb,
        "per_mode": per_mode,
        "measured_peak_bytes": None,
        "note": "",
    }
    if confirm:
        measured = measure_peak(cfg, workload, mode, best_mb, world_size)
        while measured > budget and best_mb > 1:
            best_mb = _largest_divisor(per_rank, best_mb - 1)
            out["note"] = f"measurement was over the budget; stepped down to micro-batch {best_mb}"
            measured = measure_peak(cfg, workload, mode, best_mb, world_size)
        out["micro_batch_size"], out["measured_peak_bytes"] = best_mb, measured
    return out
