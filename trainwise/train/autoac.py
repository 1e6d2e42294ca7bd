"""`memory.ac = 'auto'`: the cheapest AC mode whose peak fits `memory.budget_gib`.

Chosen before training with the estimator (trainwise.train.estimate), cheapest mode first
(`AC_COST_ORDER`: none, selective, every-n, full), and confirmed by the trainer's own measurement of
its first measured step: if the measured peak is over the budget, the model is prepared again with
the next mode (the run's state carried over) and measured again, and the summary says so (`ac_note`).
"""

from __future__ import annotations

from trainwise.config import Config
from trainwise.errors import ConfigError
from trainwise.train.ac import AC_COST_ORDER
from trainwise.train.estimate import GIB, estimate_memory


def budget_bytes(budget_gib: float) -> int:
    return int(budget_gib * GIB)


def check_budget_reachable(
    cfg: Config,
    workload,
    budget: int,
    world_size: int = 1,
    micro_batch_size: int | None = None,
    field: str = "memory.budget_gib",
) -> dict:
    """Raise when not even full AC fits; the error states the minimum reachable budget.

    Returns the full-AC estimate (the least memory any mode can reach at this micro-batch).
    """
    floor = estimate_memory(
        cfg, workload, ac_mode="full", micro_batch_size=micro_batch_size or 1, world_size=world_size
    )
    state = floor["parameter_state_bytes"]
    if budget < floor["peak_memory_bytes"]:
        what = (
            (f"is below what the parameters, gradients and optimizer state alone need ({state / GIB:.4f} GiB)")
            if budget < state
            else "cannot be reached by any AC mode"
        )
        raise ConfigError(
            f"{field} = {budget / GIB:g} {what}; the minimum reachable budget is "
            f"{floor['peak_memory_bytes'] / GIB:.4f} GiB (ac = 'full', micro-batch "
            f"{floor['inputs']['micro_batch_size']}, "
            f"precision {cfg.precision.policy}); raise the budget, or lower the memory with a cheaper "
            "precision policy or FSDP sharding"
        )
    return floor


def choose_ac_mode(
    cfg: Config, workload, budget: int, world_size: int = 1, start: str = "none"
) -> tuple[str, dict, str]:
    """The first mode from `start` on, in cost order, whose estimated peak fits `budget` bytes.

    Returns (mode, estimates by mode, note).
    """
    estimates: dict[str, dict] = {}
    for mode in AC_COST_ORDER[AC_COST_ORDER.index(start) :]:
        est = estimate_memory(cfg, workload, ac_mode=mode, world_size=world_size)
        estimates[mode] = est
        if est["peak_memory_bytes"] <= budget:
            skipped = [m for m in estimates if m != mode]
            why = f" ({', '.join(skipped)} estimated over it)" if skipped else ""
            note = (
                f"auto: chose {mode!r}, estimated peak {est['peak_memory_bytes'] / GIB:.4f} GiB <= budget "
                f"{budget / GIB:g} GiB{why}"
            )
            return mode, estimates, note
    check_budget_reachable(cfg, workload, budget, world_size)
    raise ConfigError(  # full AC fits at micro-batch 1, so the micro-batch is what is too large
        f"memory.budget_gib = {budget / GIB:g}: no AC mode fits train.micro_batch_size = {cfg.train.micro_batch_size} "
        f"(full AC is estimated at {estimates['full']['peak_memory_bytes'] / GIB:.4f} GiB); "
        "run `trainwise fit-batch` for the largest micro-batch that fits"
    )


def resolve_ac_mode(cfg: Config, workload, world_size: int = 1) -> tuple[str, str]:
    """The concrete AC mode to apply and a note; only 'auto' is changed."""
    if cfg.memory.ac != "auto":
        return cfg.memory.ac, ""
    if cfg.memory.budget_gib <= 0:
        raise ConfigError("memory.ac = 'auto' needs memory.budget_gib > 0 (the per-process memory budget in GiB)")
    mode, _, note = choose_ac_mode(cfg, workload, budget_bytes(cfg.memory.budget_gib), world_size)
    return mode, note


def confirm_ac_mode(mode: str, measured: int | None, cfg: Config, why_unmeasured: str = "") -> tuple[str, str, bool]:
    """After the trainer measured a step's peak (`measured` bytes, the largest over ranks; None when
    the step could not be measured, `why_unmeasured`): keep `mode` if it fits the budget, else choose
    the next mode in cost order, which the trainer then prepares the model with
    (trainwise.train.run.rebuild_with_ac). Returns (mode, note, switched)."""
    if measured is None:
        return mode, f"not confirmed by a measurement ({why_unmeasured or 'not measured'}); kept {mode!r}", False
    budget = budget_bytes(cfg.memory.budget_gib)
    if measured <= budget:
        return (
            mode,
            f"confirmed: measured peak {measured / GIB:.4f} GiB <= budget {budget / GIB:g} GiB with {mode!r}",
            False,
        )
    i = AC_COST_ORDER.index(mode)
    if i + 1 == len(AC_COST_ORDER):
        return (
            mode,
            f"measured peak {measured / GIB:.4f} GiB is over the budget {budget / GIB:g} GiB even with 'full'; kept "
            "'full'",
            False,
        )
    nxt = AC_COST_ORDER[i + 1]
    return (
        nxt,
        f"measured peak {measured / GIB:.4f} GiB with {mode!r} is over the budget {budget / GIB:g} GiB; fell back to "
        f"{nxt!r}",
        True,
    )
