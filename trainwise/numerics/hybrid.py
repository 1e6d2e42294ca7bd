"""`precision.keep_high_precision = ["auto"]`: keep the layers the preflight marks unsafe or not
paying in bf16, convert the others to FP8."""

from __future__ import annotations

import copy

import torch
from torch import nn

from trainwise.numerics.analysis import analyze
from trainwise.numerics.diagnose import training_batches
from trainwise.numerics.formats import RECIPES

AUTO = "auto"


def auto_keep_high_precision(
    model: nn.Module, batches, loss_fn, recipe: str, gpu: str = "h100", lr: float = 1e-3
) -> tuple[list[str], dict]:
    """(Linear layer names to keep out of FP8, the decision per layer).

    The probe trains a copy of `model` under a forked RNG, so the model and the run's random
    stream are untouched."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
    with torch.random.fork_rng(devices=[]):
        report = analyze(
            copy.deepcopy(model),
            batches,
            loss_fn,
            formats=list(dict.fromkeys(RECIPES[recipe].values())),
            recipe=recipe,
            gpu=gpu,
            lr=lr,
        )
    pf = report["preflight"]
    keep = [name for name, v in pf["layers"].items() if not v["use_fp8"] and v["fp8_eligible"]]
    decision = {
        "mode": AUTO,
        "gpu": gpu,
        "verdict": pf["verdict"],
        "kept_high_precision": keep,
        "why": {name: (v["unsafe_reasons"] or [v["speed"]["why"]]) for name, v in pf["layers"].items() if name in keep},
        "ranking": report["ranking"],
    }
    return keep, decision


def resolve_keep_patterns(
    patterns: list[str], model: nn.Module, sample_batches, loss_fn, recipe: str | None, gpu: str, lr: float
) -> tuple[list[str], dict | None]:
    """Expand ['auto'] (plus any explicit patterns) into patterns; a no-op without 'auto' or FP8."""
    if AUTO not in patterns or recipe is None:
        return [p for p in patterns if p != AUTO], None
    recipe = recipe if recipe.startswith("fp8-") else f"fp8-{recipe}"  # the policy's torchao recipe name
    keep, decision = auto_keep_high_precision(model, sample_batches(), loss_fn, recipe, gpu, lr)
    return [p for p in patterns if p != AUTO] + keep, decision


PROBE_STEPS = (
    2  # fp32 steps the auto split measures (dynamic range settles within the first steps only roughly; see docs)
)


def resolve_auto_split(cfg, workload, policy) -> tuple[list[str], dict | None]:
    """The trainer's entry: `precision.keep_high_precision` with 'auto' expanded, and the decision
    (None without 'auto' or without an FP8 policy). Probes the run's first micro-batches."""
    patterns = list(cfg.precision.keep_high_precision)
    return resolve_keep_patterns(
        patterns,
        workload.model,
        lambda: training_batches(cfg, workload, PROBE_STEPS),
        workload.loss_fn,
        policy.fp8_recipe,
        cfg.precision.auto_gpu,
        cfg.train.lr,
    )
