"""The statistics of the timing phase: paired per-round speed ratios with a distribution-free
confidence interval of their median, and the load rule that says when a shared machine was too
busy for any ratio to be quoted.

Why paired rounds: on a shared machine the speed of everything drifts by tens of percent within
minutes. In one round every variant runs a few steps back to back, so a drift hits all of them
alike and cancels in the round's ratio; the median over rounds ignores the rounds a burst of
other work spoiled. The 95% interval of that median comes from order statistics (the binomial
sign-test interval, `scipy.stats.quantile_test`): it assumes nothing about the distribution of the
ratios, only that rounds are independent. It needs at least 6 rounds (with 5, even the widest
interval, min to max, covers the median with only 94% probability).
"""

from __future__ import annotations

import os
from pathlib import Path
from statistics import median

MIN_ROUNDS = 6  # the fewest rounds whose min-max interval covers the median with >= 95% probability
MAX_STEAL_SHARE = 0.10  # more CPU time than this taken by the hypervisor: the cores were not ours


def median_ci95(values: list[float]) -> tuple[float | None, float | None]:
    """Distribution-free 95% confidence interval of the median (order statistics); (None, None)
    with fewer than MIN_ROUNDS values."""
    if len(values) < MIN_ROUNDS:
        return None, None
    # lazy: scipy takes seconds to import, and every bench worker process loads this module (via bench.runner)
    from scipy.stats import quantile_test

    ci = quantile_test(values, q=median(values), p=0.5).confidence_interval(0.95)
    return float(ci.low), float(ci.high)


def round_ratios(numerator: list[list[float] | None], denominator: list[list[float] | None]) -> list[float]:
    """Per round, the ratio of the two variants' median step times (rounds where both ran)."""
    # not strict: a variant that never started has no rounds at all, and then no ratio
    return [median(n) / median(d) for n, d in zip(numerator, denominator, strict=False) if n and d]


def ratio_summary(ratios: list[float], machine_reason: str | None, max_ratio_ci: float, what: str) -> dict:
    """{median, ci95, n_rounds, reliable, note}: `note` is what a report shows, a figure only when
    the machine was quiet enough and the interval narrow enough to support it."""
    n = len(ratios)
    if not n:
        return {"median": None, "ci95": None, "n_rounds": 0, "reliable": False, "note": f"{what}: no round timed both"}
    mid = median(ratios)
    lo, hi = median_ci95(ratios)
    out = {"median": mid, "ci95": [lo, hi] if lo is not None else None, "n_rounds": n, "reliable": False}
    if machine_reason:
        out["note"] = machine_reason
    elif lo is None:
        out["note"] = (
            f"timings unreliable: {n} paired rounds; a distribution-free 95% interval of the median needs at least "
            f"{MIN_ROUNDS}"
        )
    elif max(hi / mid - 1, 1 - lo / mid) > max_ratio_ci:
        out["note"] = (
            f"timings unreliable: the 95% interval of {what}, {lo:.2f}x to {hi:.2f}x, reaches beyond "
            f"±{max_ratio_ci:.0%} of its median {mid:.2f}x (bench.max_ratio_ci)"
        )
    else:
        out["reliable"] = True
        out["note"] = f"{what}: {mid:.2f}x (95% CI {lo:.2f}x to {hi:.2f}x, {n} rounds)"
    return out


def machine_verdict(loads: list[dict], own_threads: int, cores: int, max_load_per_core: float) -> str | None:
    """Why the rounds' timings cannot support a ratio, or None. Unreliable when, over the rounds
    (median), the load average from other processes (the timed process's own threads subtracted:
    it is one runnable task per thread) exceeds `max_load_per_core` per core, when the hypervisor
    stole more than MAX_STEAL_SHARE of the CPU time, or when fewer than MIN_ROUNDS rounds ran."""
    if len(loads) < MIN_ROUNDS:
        return (
            f"timings unreliable: {len(loads)} timing round(s) ran; a distribution-free 95% interval needs at least "
            f"{MIN_ROUNDS}" + (" (the time budget ran out)" if loads else "")
        )
    load = median((r["loadavg_per_core_before"] + r["loadavg_per_core_after"]) / 2 for r in loads) * cores
    others = load - min(own_threads, cores)
    if others / cores > max_load_per_core:
        return (
            f"timings unreliable: load {load:.1f} on {cores} cores, {others:.1f} of it other processes' "
            f"(over bench.max_load_per_core = {max_load_per_core:g} per core)"
        )
    steals = [r["steal_share"] for r in loads if r.get("steal_share") is not None]
    if steals and median(steals) > MAX_STEAL_SHARE:
        return (
            f"timings unreliable: the hypervisor took {median(steals):.0%} of the CPU time (steal) during the timing "
            "rounds"
        )
    return None


# ---------------------------------------------------------------------------------------------
# reading the machine's load


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_times(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(steal, total) jiffies from the kernel's aggregate cpu line; None where it is not reported."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu" or len(first) < 9:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    fields = [int(v) for v in first[1:9]]
    return fields[7], sum(fields)


def sample_load() -> dict:
    return {"loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None, "cpu_times": cpu_times()}


def load_row(before: dict, after: dict, cores: int) -> dict:
    """The load around one round: 1-minute load average per core before and after it, and the
    share of CPU time stolen by the hypervisor during it (None where the kernel does not say)."""
    steal = None
    if before["cpu_times"] and after["cpu_times"]:
        d_steal, d_total = (a - b for a, b in zip(after["cpu_times"], before["cpu_times"], strict=True))
        steal = d_steal / d_total if d_total > 0 else None
    per_core = [x / cores if x is not None else 0.0 for x in (before["loadavg"], after["loadavg"])]
    return {"loadavg_per_core_before": per_core[0], "loadavg_per_core_after": per_core[1], "steal_share": steal}
