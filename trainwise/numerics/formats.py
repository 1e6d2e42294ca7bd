"""Low-precision number formats as real casts: overflow/flush shares and dequantised copies.

Every figure here comes from a real `tensor.to(dtype)` cast of the installed torch, never from a
formula for the format: if torch cannot cast to a format, that format cannot be checked.

Scaling (torchao float8 training, `Float8LinearConfig.from_recipe_name`):
- tensorwise: one scale per tensor, `scale = fp8_max / amax(|x|)`, so the current step's
  values never overflow; small values flush to zero instead.
- rowwise: one scale per row along the last (reduction) dim; torchao rounds these scales down
  to a power of two (`round_scales_to_power_of_2=True` in its rowwise recipe), as done here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainwise.errors import TrainwiseError


@dataclass(frozen=True)
class Format:
    name: str
    dtype_name: str  # attribute of torch, e.g. "float8_e4m3fn"
    scaling: str = "none"  # none | tensorwise | rowwise
    loss_scaled: bool = False  # gradients are multiplied by the loss scale before the cast

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype_name)


FORMATS = {
    f.name: f
    for f in [
        Format("fp16", "float16"),
        Format("fp16-scaled", "float16", loss_scaled=True),
        Format("bf16", "bfloat16"),
        Format("e4m3-tensorwise", "float8_e4m3fn", "tensorwise"),
        Format("e4m3-rowwise", "float8_e4m3fn", "rowwise"),
        Format("e5m2-tensorwise", "float8_e5m2", "tensorwise"),
        Format("e5m2-rowwise", "float8_e5m2", "rowwise"),
        # not checked by default: torch 2.x has the dtype but (on CPU) no cast kernel for it
        Format("fp4-e2m1", "float4_e2m1fn_x2", "tensorwise"),
    ]
}
DEFAULT_FORMATS = ["fp16", "fp16-scaled", "bf16", "e4m3-tensorwise", "e4m3-rowwise", "e5m2-tensorwise", "e5m2-rowwise"]

# torchao's recipes: which format each operand of a Linear's GEMMs is cast to.
RECIPES = {
    "fp8-tensorwise": {"activations": "e4m3-tensorwise", "weights": "e4m3-tensorwise", "gradients": "e5m2-tensorwise"},
    "fp8-rowwise": {"activations": "e4m3-rowwise", "weights": "e4m3-rowwise", "gradients": "e4m3-rowwise"},
}


def check_formats(names: list[str]) -> list[Format]:
    """The formats, after checking each is known and that the installed torch really casts to it."""
    out = []
    for name in names:
        if name not in FORMATS:
            raise TrainwiseError(f"format {name!r} is not known; expected one of {', '.join(FORMATS)}")
        fmt = FORMATS[name]
        try:
            torch.ones(4).to(fmt.dtype).float()
        except (AttributeError, RuntimeError, TypeError) as e:
            raise TrainwiseError(
                f"format {name!r}: the installed torch {torch.__version__} cannot cast to {fmt.dtype_name} "
                f"({type(e).__name__}: {str(e).splitlines()[0]}); drop it from --formats"
            ) from None
        out.append(fmt)
    return out


def _amax(x: torch.Tensor, scaling: str) -> torch.Tensor:
    if scaling == "rowwise":
        return x.abs().amax(dim=-1, keepdim=True)
    return x.abs().amax()


def scale_of(x: torch.Tensor, fmt: Format) -> torch.Tensor:
    """The multiplier applied before the cast (1 for unscaled formats)."""
    if fmt.scaling == "none":
        return torch.ones((), dtype=x.dtype, device=x.device)
    amax = _amax(x.float(), fmt.scaling).clamp(min=1e-12)  # torchao's EPS guards all-zero tensors
    scale = torch.finfo(fmt.dtype).max / amax
    if fmt.scaling == "rowwise":
        scale = torch.exp2(torch.floor(torch.log2(scale)))
    return scale


def scaled(x: torch.Tensor, fmt: Format, loss_scale: float = 1.0) -> torch.Tensor:
    """x as the cast sees it: times the loss scale (gradients in loss-scaled formats), times the fp8 scale."""
    x = x.float()
    if fmt.loss_scaled:
        x = x * loss_scale
    return x * scale_of(x, fmt)


def shares(x: torch.Tensor, fmt: Format, loss_scale: float = 1.0) -> dict:
    """Shares of all elements of x that overflow (|value| above the format's max) or flush to zero
    (non-zero, but zero after the real cast) in `fmt`."""
    xs = scaled(x, fmt, loss_scale)
    n = max(1, xs.numel())
    overflow = (xs.abs() > torch.finfo(fmt.dtype).max).sum().item()
    flushed = ((xs != 0) & (xs.to(fmt.dtype).float() == 0)).sum().item()
    return {"overflow": overflow / n, "underflow": flushed / n}


def quantize(x: torch.Tensor, fmt: Format, loss_scale: float = 1.0) -> torch.Tensor:
    """x after a real round trip through `fmt`, back in fp32 (the dequantised operand of a GEMM).

    fp8 casts saturate at the format's max like torchao's; unscaled formats overflow to inf."""
    x = x.float()
    ls = loss_scale if fmt.loss_scaled else 1.0
    s = scale_of(x * ls, fmt)
    xs = x * ls * s
    if fmt.scaling != "none":
        fmax = torch.finfo(fmt.dtype).max
        xs = xs.clamp(-fmax, fmax)
    return xs.to(fmt.dtype).float() / s / ls
