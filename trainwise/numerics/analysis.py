"""From the probe's measurements to a report: numerics safety per layer, a worst-first ranking,
and the FP8 preflight."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainwise.numerics.formats import FORMATS, RECIPES, check_formats
from trainwise.numerics.preflight import check_gpu, preflight
from trainwise.numerics.probe import find_layers, loss_impact, probe, scaled_mm_check
from trainwise.train.precision import fp8_module_filter

FP16_MAX = torch.finfo(torch.float16).max
# A layer is unsafe for an fp8 recipe when its matmul error exceeds this. e4m3's unit roundoff is
# 2^-4 = 6%; independent rounding errors partly cancel in a dot product, so healthy layers sit
# well below it (lm-tiny: 2-4%, see docs/numerics.md) and 10% flags a layer that loses more.
ERROR_TOLERANCE = 0.10
FLUSH_TOLERANCE = 0.01  # share of an operand's values flushed to zero by the recipe's cast
METHOD = (
    "operands really cast to each format (with its scaling), dequantised, and multiplied in fp32: "
    "numerically a low-precision GEMM with fp32 accumulation; torch._scaled_mm checked on a small sample"
)


def layer_score(r: dict, recipe: str) -> float:
    errs = r["errors"].get(recipe, {})
    return max(errs.values(), default=0.0)


def unsafe_reasons(r: dict, recipe: str) -> tuple[int, list[str]]:
    """(severity, reasons): 2 for activations beyond fp16's range, 1 for fp8 error or flushing."""
    reasons, severity = [], 0
    for kind in ("activations", "outputs"):
        amax = r["stats"].get(kind, {}).get("amax", 0.0)
        if not math.isfinite(amax) or amax > FP16_MAX:
            reasons.append(f"{kind} reach {amax:.3g}, beyond fp16's range ({FP16_MAX:g})")
            severity = 2
    score = layer_score(r, recipe)
    if score > ERROR_TOLERANCE:
        reasons.append(f"{recipe} matmul error {score:.3g} > {ERROR_TOLERANCE:g}")
        severity = max(severity, 1)
    for kind, fmt in RECIPES[recipe].items():
        share = r["stats"].get(kind, {}).get("shares", {}).get(fmt, {}).get("underflow", 0.0)
        if share > FLUSH_TOLERANCE:
            reasons.append(f"{share:.1%} of {kind} flush to zero in {fmt}")
            severity = max(severity, 1)
    return severity, reasons


def analyze(
    model: nn.Module,
    batches,
    loss_fn,
    formats: list[str],
    recipe: str = "fp8-tensorwise",
    gpu: str = "h100",
    loss_scale: float = 65536.0,
    lr: float = 1e-3,
) -> dict:
    """Probe `model` on `batches` (list of (x, y)) and build the numerics report (numerics.json)."""
    # Over 60 lines on purpose: loss impact, probe, ranking and preflight in order, then the report dict in the shape
    # numerics.json documents.
    fmts = check_formats(formats)
    check_gpu(gpu)
    for needed in RECIPES[recipe].values():  # the ranking needs the recipe's formats to be castable
        check_formats([needed])

    in_filter = fp8_module_filter()
    modules = find_layers(model)
    eligible = {n for n, m in modules.items() if in_filter(m, n)}
    fmt_of = {k: FORMATS[v] for k, v in RECIPES[recipe].items()}
    # loss impact first, on the model as given: the probe's optimizer steps change it
    impact = loss_impact(model, batches, loss_fn, modules, eligible, fmt_of)
    layers = probe(model, batches, loss_fn, fmts, loss_scale=loss_scale, lr=lr)
    ranked = []
    for name, r in layers.items():
        r["loss_impact"] = impact["impact"][name]
        r["severity"], r["unsafe_reasons"] = unsafe_reasons(r, recipe)
        r["score"] = layer_score(r, recipe)
        ranked.append(name)
    # beyond fp16's range first (severity 2: the layer cannot run in low precision at all), then by
    # what its fp8 forward costs in loss, then by severity-1 flags and matmul error. Flags (flushing,
    # error over tolerance) do not outrank a measured loss: on lm-tiny, layers flagged for 2-5% e5m2
    # gradient flushing recovered nothing when kept (benchmarks/numerics_ranking.py)
    ranked.sort(
        key=lambda n: (layers[n]["severity"] == 2, layers[n]["loss_impact"], layers[n]["severity"], layers[n]["score"]),
        reverse=True,
    )
    for i, name in enumerate(ranked):
        layers[name]["rank"] = i + 1
    pf = preflight(layers, {n: r["unsafe_reasons"] for n, r in layers.items()}, gpu, eligible)
    return {
        "steps": len(batches),
        "formats": [f.name for f in fmts],
        "recipe": recipe,
        "recipe_formats": RECIPES[recipe],
        "loss_scale": loss_scale,
        "error_method": METHOD,
        "error_tolerance": ERROR_TOLERANCE,
        "loss_impact": {
            "method": (
                "leave-one-out fake-quantised forward in the recipe's formats, eval mode, the probe's batches "
                "(probe.loss_impact)"
            ),
            "loss_fp32": impact["loss_fp32"],
            "loss_converted": impact["loss_converted"],
            "gap": impact["gap"],
        },
        "scaled_mm_check": scaled_mm_check(),
        "ranking": ranked,
        "layers": {n: layers[n] for n in ranked},
        "preflight": pf,
        "torch": torch.__version__,
        "format_dtypes": {f: FORMATS[f].dtype_name for f in formats},
    }
