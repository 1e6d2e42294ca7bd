"""Health checks called only when needed: naming the forward layer that went non-finite, and the
divergence alarm that compares a low-precision run's loss curve with its fp32 control's band."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn


def replay_forward(model: nn.Module, x: torch.Tensor, context_fn=contextlib.nullcontext) -> None:
    """Re-run a forward pass without autograd, inside `context_fn()` (the run's autocast)."""
    with torch.no_grad(), context_fn():
        model(x)


def first_nonfinite_activation(model: nn.Module, replay) -> str | None:
    """The first module, in execution order, whose forward output holds NaN or inf while `replay()`
    re-runs the forward. Hooks exist only during the replay, so the training hot path pays nothing.
    Children finish before their parents, so the innermost module is named."""
    found: list[str] = []

    def hook(name):
        def fn(module, inputs, output):
            if found:
                return
            outs = output if isinstance(output, (tuple, list)) else (output,)
            if any(torch.is_tensor(o) and o.is_floating_point() and not torch.isfinite(o).all() for o in outs):
                found.append(name)

        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        replay()
    finally:
        for h in handles:
            h.remove()
    return found[0].replace("_orig_mod.", "") if found else None


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def divergence_alarm(
    control_losses, candidate_losses, rel_tolerance: float = 0.05, smooth_steps: int = 10, steps=None
) -> str | None:
    """An alarm text when the candidate's (smoothed) loss leaves the band control x (1 +- rel_tolerance)
    of its fp32 control, else None. Both curves are per logged step on the same seed and data order;
    `steps` names the step of each point (default 1, 2, ...). A non-finite candidate loss diverges.

    >>> divergence_alarm([2.0, 1.5, 1.2, 1.0], [2.0, 1.5, 1.25, 1.3], rel_tolerance=0.1, smooth_steps=1)
    'divergence: at step 4 the loss 1.3 left the band of its fp32 control (1 +- 10%)'
    >>> divergence_alarm([2.0, 1.5], [2.01, 1.49], rel_tolerance=0.05) is None
    True
    """
    control, candidate = [float(v) for v in control_losses], [float(v) for v in candidate_losses]
    n = min(len(control), len(candidate))
    if n == 0:
        raise ValueError("divergence_alarm needs at least one loss in each curve")
    steps = list(steps) if steps is not None else list(range(1, n + 1))
    for i, v in enumerate(candidate[:n]):
        if not math.isfinite(v):
            return f"divergence: the loss is {v} at step {steps[i]}"
    c, d = _smooth(control[:n], smooth_steps), _smooth(candidate[:n], smooth_steps)
    for i in range(n):
        if abs(d[i] - c[i]) > rel_tolerance * abs(c[i]):
            return (
                f"divergence: at step {steps[i]} the loss {d[i]:.4g} left the band of its fp32 control ({c[i]:.4g} +- "
                f"{rel_tolerance:.0%})"
            )
    return None
