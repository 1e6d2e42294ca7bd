"""Run a few fp32 training steps with hooks and measure, per Linear/Conv layer, the dynamic range
of its activations (inputs), outputs, weights and gradients (with respect to its output), the
share of values each format overflows or flushes, and the error of its matmuls in each format.

Matmul error method: each operand is really cast to the format (with its scaling), dequantised,
and the GEMM runs in fp32 ("fake quantisation"). That is numerically a low-precision GEMM with
fp32 accumulation, which is what fp8 tensor-core GEMMs do; `torch._scaled_mm` on CPU is a
reference kernel (~15 MFLOP/s), so it is only used on a small sample to check this equivalence
(`scaled_mm_check`). fp16/bf16 GEMMs write their output in that format, fp8 ones in bf16
(torchao's Float8Linear under bf16 autocast), so outputs are cast accordingly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainwise.errors import TrainwiseError
from trainwise.numerics.formats import FORMATS, RECIPES, Format, quantize, scale_of, shares

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
KINDS = ("activations", "outputs", "weights", "gradients")
MAX_ROWS = 4096  # rows of each operand used for the error GEMMs (bounds CPU time on big batches)
PERCENTILES = (50.0, 99.0, 99.9)


def find_layers(model: nn.Module) -> dict[str, nn.Module]:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)}
    if not layers:
        raise TrainwiseError(
            f"the model ({type(model).__name__}) has no nn.Linear or nn.Conv layers; numerics checks the matmuls of "
            "those layers only"
        )
    return layers


def range_stats(x: torch.Tensor, formats: list[Format], loss_scale: float) -> dict:
    a = x.detach().float().abs().flatten()
    nz = a[a > 0]
    sample = a if a.numel() <= 1_000_000 else a[:: a.numel() // 1_000_000 + 1]  # torch.quantile's size limit
    q = torch.quantile(sample, torch.tensor([p / 100 for p in PERCENTILES]))
    return {
        "amax": a.max().item() if a.numel() else 0.0,
        "min_nonzero": nz.min().item() if nz.numel() else None,
        "percentiles": {f"p{p:g}": v for p, v in zip(PERCENTILES, q.tolist(), strict=True)},
        "nonfinite_share": (~torch.isfinite(a)).float().mean().item() if a.numel() else 0.0,
        "shares": {f.name: shares(x, f, loss_scale) for f in formats},
    }


def _rows(x: torch.Tensor, last_dim: int) -> torch.Tensor:
    return x.detach().float().reshape(-1, last_dim)[:MAX_ROWS]


def _rel_err(approx: torch.Tensor, ref: torch.Tensor) -> float:
    err = (approx - ref).norm() / ref.norm().clamp(min=1e-30)
    return err.item() if torch.isfinite(err) else math.inf


def _out_dtype(op_formats: list[Format]) -> torch.dtype:
    return op_formats[0].dtype if all(f.scaling == "none" for f in op_formats) else torch.bfloat16


def _forward(layer: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, w, layer.bias.detach().float() if layer.bias is not None else None)
    return layer._conv_forward(x, w, layer.bias.detach().float() if layer.bias is not None else None)


def matmul_errors(layer: nn.Module, x: torch.Tensor, g: torch.Tensor | None, fmt_of: dict, loss_scale: float) -> dict:
    """Relative Frobenius error of the forward output (and, for Linear, of the input gradient
    grad_out @ W) with operands in the formats `fmt_of[kind]`, versus fp32."""
    w = layer.weight.detach().float()
    if isinstance(layer, nn.Linear):
        x = _rows(x, layer.in_features)
    else:
        x = x.detach().float()[: max(1, MAX_ROWS // 64)]
    fa, fw, fg = fmt_of["activations"], fmt_of["weights"], fmt_of["gradients"]
    ref = _forward(layer, x, w)
    out = _forward(layer, quantize(x, fa), quantize(w, fw)).to(_out_dtype([fa, fw])).float()
    result = {"forward": _rel_err(out, ref)}
    if isinstance(layer, nn.Linear) and g is not None:
        g = _rows(g, layer.out_features)
        ref_gi = g @ w
        # W's reduction dim is now dim 0 (N): scale it column-wise, i.e. rowwise on W.T
        wq = quantize(w.t().contiguous(), fw).t()
        gi = (quantize(g, fg, loss_scale) @ wq).to(_out_dtype([fg, fw])).float()
        result["grad_input"] = _rel_err(gi, ref_gi)
    return result


def error_columns(formats: list[Format]) -> dict[str, dict]:
    """Heat-map columns: each format on all operands, then torchao's two fp8 recipes."""
    cols = {f.name: {"activations": f, "weights": f, "gradients": f} for f in formats if not f.loss_scaled}
    for recipe, kinds in RECIPES.items():
        cols[recipe] = {k: FORMATS[v] for k, v in kinds.items()}
    return cols


class _Capture:
    """Forward hooks store each layer's input and output; a hook on the output stores its gradient."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.data: dict[str, dict] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in layers.items()]

    def _hook(self, name):
        def hook(module, inputs, output):
            entry = self.data.setdefault(name, {})
            entry["activations"], entry["outputs"] = inputs[0].detach(), output.detach()
            if output.requires_grad:
                output.register_hook(lambda g: entry.__setitem__("gradients", g.detach()))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _merge(acc: dict | None, new: dict) -> dict:
    """Worst case over steps: largest amax and shares, smallest non-zero; percentiles of the last step."""
    if acc is None:
        return new
    out = dict(new)
    out["amax"] = max(acc["amax"], new["amax"])
    mins = [v for v in (acc["min_nonzero"], new["min_nonzero"]) if v is not None]
    out["min_nonzero"] = min(mins) if mins else None
    out["nonfinite_share"] = max(acc["nonfinite_share"], new["nonfinite_share"])
    out["shares"] = {f: {k: max(acc["shares"][f][k], v) for k, v in s.items()} for f, s in new["shares"].items()}
    return out


def probe(
    model: nn.Module, batches, loss_fn, formats: list[Format], loss_scale: float = 65536.0, lr: float = 1e-3
) -> dict:
    """Train `model` (fp32) on each (x, y) of `batches` with AdamW at `lr`, measuring every layer.

    Returns {layer name: {"type", "shape", "stats": {kind: ...}, "errors": {column: {...}}}}; the
    errors are averaged over steps."""
    layers = find_layers(model)
    columns = error_columns(formats)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    result: dict[str, dict] = {}
    n_steps = 0
    model.train()
    for x, y in batches:
        cap = _Capture(layers)
        try:
            loss = loss_fn(model(x), y)
            loss.backward()
        finally:
            cap.remove()
        n_steps += 1
        for name, layer in layers.items():
            got = cap.data.get(name)
            if got is None:
                continue  # a layer the forward did not use
            r = result.setdefault(
                name,
                {"type": type(layer).__name__, "shape": _shape(layer, got["activations"]), "stats": {}, "errors": {}},
            )
            _add_step(r, layer, got, formats, columns, loss_scale)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for r in result.values():
        for errs in r["errors"].values():
            for k in errs:
                errs[k] /= n_steps
    return result


def _add_step(r: dict, layer: nn.Module, got: dict, formats: list[Format], columns: dict, loss_scale: float) -> None:
    """Fold one step's captured tensors of `layer` into its entry `r`: worst-case range stats, summed errors."""
    tensors = {**got, "weights": layer.weight}
    for kind in KINDS:
        if kind in tensors:
            r["stats"][kind] = _merge(
                r["stats"].get(kind),
                range_stats(tensors[kind], formats, loss_scale if kind == "gradients" else 1.0),
            )
    with torch.no_grad():
        for col, fmt_of in columns.items():
            errs = matmul_errors(layer, got["activations"], got.get("gradients"), fmt_of, loss_scale)
            acc = r["errors"].setdefault(col, {k: 0.0 for k in errs})
            for k, v in errs.items():
                acc[k] += v


class _FakeQuantOutputs:
    """Forward hooks that replace the output of the layers in `self.active` by their matmul with
    operands cast to the given formats (fake quantisation, as in matmul_errors)."""

    def __init__(self, layers: dict[str, nn.Module], fmt_of: dict):
        self.active: set[str] = set()
        fa, fw = fmt_of["activations"], fmt_of["weights"]
        out_dtype = _out_dtype([fa, fw])

        def hook(name):
            def replace(module, inputs, output):
                if name not in self.active:
                    return None
                y = _forward(module, quantize(inputs[0], fa), quantize(module.weight.detach(), fw))
                return y.to(out_dtype).to(output.dtype)

            return replace

        self.handles = [m.register_forward_hook(hook(name)) for name, m in layers.items()]

    def remove(self):
        for h in self.handles:
            h.remove()


def loss_impact(
    model: nn.Module, batches, loss_fn, layers: dict[str, nn.Module], converted: set[str], fmt_of: dict
) -> dict:
    """What each layer's low-precision forward matmul costs in loss, in the converted model.

    E = the layers a conversion would convert (`converted`). For every layer i:
    impact_i = loss(E + {i} in the formats) - loss(E - {i} in the formats), the rest fp32, mean over
    `batches`, model in eval mode, no gradients. For a converted layer it is what keeping it in high
    precision recovers; for another layer, what converting it too would cost. This measures the
    layer's error where it matters, after everything downstream has amplified or damped it, which
    its own matmul error cannot tell: an early layer's small error can cost more than a late
    layer's large one. Forward only: gradient-side errors are in `errors` and `unsafe_reasons`.
    """
    fq = _FakeQuantOutputs(layers, fmt_of)
    was_training = model.training
    model.eval()

    def mean_loss(active: set[str]) -> float:
        fq.active = active
        with torch.no_grad():
            return sum(float(loss_fn(model(x), y)) for x, y in batches) / len(batches)

    try:
        base = mean_loss(set())
        all_converted = mean_loss(set(converted))
        impact = {}
        for name in layers:
            with_i, without_i = (
                (all_converted, mean_loss(converted - {name}))
                if name in converted
                else (mean_loss(converted | {name}), all_converted)
            )
            impact[name] = _loss_difference(with_i, without_i)
    finally:
        fq.remove()
        model.train(was_training)
    return {"loss_fp32": base, "loss_converted": all_converted, "gap": all_converted - base, "impact": impact}


def _loss_difference(with_i: float, without_i: float) -> float:
    """with_i - without_i; inf when converting the layer alone makes the loss non-finite, 0 when
    the loss is non-finite either way (another layer breaks it; this one cannot be told apart)."""
    if math.isfinite(with_i) and math.isfinite(without_i):
        return with_i - without_i
    if math.isfinite(without_i):
        return math.inf
    return -math.inf if math.isfinite(with_i) else 0.0


def _shape(layer: nn.Module, x: torch.Tensor) -> dict:
    """GEMM shape (M, K, N) of the forward matmul: M rows (tokens or samples), K in, N out."""
    if isinstance(layer, nn.Linear):
        return {"M": x.numel() // layer.in_features, "K": layer.in_features, "N": layer.out_features}
    k = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    return {"M": None, "K": k, "N": layer.out_channels}


def scaled_mm_check(rows: int = 32, k: int = 64, n: int = 32, seed: int = 0) -> dict | None:
    """Compare the fake-quantised e4m3 tensorwise GEMM with torch._scaled_mm on a small sample."""
    if not hasattr(torch, "_scaled_mm"):
        return None
    gen = torch.Generator().manual_seed(seed)
    x, w = torch.randn(rows, k, generator=gen), torch.randn(n, k, generator=gen)
    f = FORMATS["e4m3-tensorwise"]

    sx, sw = scale_of(x, f), scale_of(w, f)
    xq = (x * sx).clamp(-448, 448).to(f.dtype)
    wq = (w * sw).clamp(-448, 448).to(f.dtype)
    try:
        real = torch._scaled_mm(xq, wq.t(), scale_a=(1 / sx).float(), scale_b=(1 / sw).float(), out_dtype=torch.float32)
    except RuntimeError as e:
        return {"available": False, "reason": str(e).splitlines()[0]}
    fake = quantize(x, f) @ quantize(w, f).t()
    return {
        "available": True,
        "shape": [rows, k, n],
        "max_rel_diff": ((real - fake).abs().max() / fake.abs().max()).item(),
    }
