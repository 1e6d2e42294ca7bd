"""`memory.ac = 'auto'`: the cheapest AC mode whose peak fits `memory.budget_gib`.

Chosen before training with the estimator (trainwise.train.estimate), cheapest mode first
(`AC_COST_ORDER`: none, selective, every-n, full), and confirmed by the trainer's own measurement of
its first measured step: if the measured peak is over the budget, the model is rewrapped with the
next mode and measured again, and the summary says so (`ac_note`).
"""

from __future__ import annotations

from torch import nn

from trainwise.config import Config
from trainwise.errors import ConfigError
from trainwise.train.ac import AC_COST_ORDER, apply_ac, remove_ac
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


def confirm_ac_mode(
    model: nn.Module, mode: str, memory: dict, cfg: Config, block_classes: tuple
) -> tuple[str, str, bool]:
    """After the trainer measured a step: keep `mode` if its measured peak fits the budget, else
    rewrap the model with the next mode in cost order. Returns (mode, note, switched)."""
    measured = max(memory.get("peak_memory_bytes") or 0, memory.get("max_memory_allocated") or 0)
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
    if cfg.parallel.strategy == "fsdp2":  # blocks are sharded units now: rewrapping them would break FSDP
        return (
            mode,
            f"measured peak {measured / GIB:.4f} GiB with {mode!r} is over the budget {budget / GIB:g} GiB; under "
            f"fsdp2 the mode cannot change after sharding: set memory.ac = {nxt!r}",
            False,
        )
    remove_ac(model)
    apply_ac(model, nxt, cfg.memory.ac_every, block_classes, cfg.memory.block_classes)
    return (
        nxt,
        f"measured peak {measured / GIB:.4f} GiB with {mode!r} is over the budget {budget / GIB:g} GiB; fell back to "
        f"{nxt!r}",
        True,
    )
