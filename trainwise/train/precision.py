"""Precision policies: what dtype the master weights live in, what dtype compute runs in.

| policy          | master weights | compute                              | extra                          |
|-----------------|----------------|--------------------------------------|--------------------------------|
| fp32            | fp32           | fp32                                 |                                |
| bf16-mixed      | fp32           | autocast bf16                        |                                |
| fp16-mixed      | fp32           | autocast fp16                        | dynamic loss scaling           |
| bf16-true       | bf16           | bf16                                 | no fp32 master copy            |
| fp8-tensorwise  | fp32           | fp8 matmuls (torchao), bf16 elsewhere| output head and dims % 16 skip |
| fp8-rowwise     | fp32           | fp8 matmuls, rowwise scales          | as above                       |
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from dataclasses import dataclass

import torch
from torch import nn

from trainwise.errors import DeviceError
from trainwise.train.names import POLICY_NAMES


@dataclass(frozen=True)
class Policy:
    name: str
    param_dtype: torch.dtype  # dtype of the weights the optimizer updates
    autocast_dtype: torch.dtype | None  # dtype of autocast regions, None = no autocast
    loss_scaling: bool = False
    fp8_recipe: str | None = None
    fp32_matmul: str = "ieee"  # 'tf32' when precision.allow_tf32 took effect (CUDA only)

    def describe(self) -> dict:
        """The policy stated explicitly, for env.json."""
        return {
            "name": self.name,
            "master_weights": str(self.param_dtype).removeprefix("torch."),
            "compute": (f"fp8 matmuls ({self.fp8_recipe} scaling) + " if self.fp8_recipe else "")
            + (
                f"autocast {str(self.autocast_dtype).removeprefix('torch.')}"
                if self.autocast_dtype
                else str(self.param_dtype).removeprefix("torch.")
            ),
            "loss_scaling": "dynamic" if self.loss_scaling else "none",
            "fp32_matmul": self.fp32_matmul,
        }


POLICIES = {
    "fp32": Policy("fp32", torch.float32, None),
    "bf16-mixed": Policy("bf16-mixed", torch.float32, torch.bfloat16),
    "fp16-mixed": Policy("fp16-mixed", torch.float32, torch.float16, loss_scaling=True),
    "bf16-true": Policy("bf16-true", torch.bfloat16, None),
    "fp8-tensorwise": Policy("fp8-tensorwise", torch.float32, torch.bfloat16, fp8_recipe="tensorwise"),
    "fp8-rowwise": Policy("fp8-rowwise", torch.float32, torch.bfloat16, fp8_recipe="rowwise"),
}
if tuple(POLICIES) != POLICY_NAMES:  # the config offers POLICY_NAMES (trainwise.train.names): keep them one list
    raise ImportError(f"precision.POLICIES {list(POLICIES)} differs from trainwise.train.names.POLICY_NAMES")


def get_policy(name: str, device: torch.device, allow_tf32: bool = False) -> Policy:
    """The policy, after checking that `device` can run it (a clear error otherwise), with the
    precision of fp32 matmuls set for this process (`apply_fp32_matmul`)."""
    policy = dataclasses.replace(POLICIES[name], fp32_matmul=apply_fp32_matmul(allow_tf32, device))
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        needs_bf16 = policy.autocast_dtype == torch.bfloat16 or policy.param_dtype == torch.bfloat16
        if needs_bf16 and not torch.cuda.is_bf16_supported():
            raise DeviceError(
                f"precision.policy = {name!r} needs bf16, which {torch.cuda.get_device_name(device)} "
                f"(sm_{major}{minor}) lacks; use fp16-mixed or fp32"
            )
        if policy.fp8_recipe and (major, minor) < (8, 9):
            raise DeviceError(
                f"precision.policy = {name!r} needs FP8 matmuls (sm_89 or newer, e.g. L4, H100); "
                f"{torch.cuda.get_device_name(device)} is sm_{major}{minor}"
            )
    if policy.fp8_recipe:
        try:  # torchao is optional: only FP8 policies need it
            import torchao.float8  # noqa: F401
        except ImportError:
            raise DeviceError(f"precision.policy = {name!r} needs torchao: pip install torchao") from None
    return policy


def apply_fp32_matmul(allow_tf32: bool, device: torch.device) -> str:
    """Let fp32 matmuls and convolutions on CUDA run as TF32 (inputs rounded to a 10-bit mantissa,
    on tensor cores; sm_80 or newer) when `allow_tf32`, else as IEEE fp32; returns which.

    Set explicitly either way, so an fp32 control is never TF32 because a library switched it on.
    Only torch's newer per-backend API is used: torch refuses reads after a mix of it and the
    legacy `allow_tf32` flags. A CPU has no TF32: there the setting has no effect, and says so.
    """
    if device.type != "cuda":
        return "ieee (precision.allow_tf32 has no effect on cpu)" if allow_tf32 else "ieee"
    mode = "tf32" if allow_tf32 else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    return mode


def autocast_context(policy: Policy, device: torch.device):
    """The autocast region for the forward pass (a no-op for fp32 and bf16-true)."""
    if policy.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=policy.autocast_dtype)


def make_grad_scaler(policy: Policy, device: torch.device, init_scale: float) -> torch.amp.GradScaler | None:
    """Dynamic loss scaling for fp16 (torch.amp.GradScaler); None for every other policy."""
    if not policy.loss_scaling:
        return None
    return torch.amp.GradScaler(device.type, init_scale=init_scale)


def fp8_module_filter(head_names: tuple[str, ...] = ("head", "lm_head", "output"), keep_patterns: list[str] = ()):
    """Which Linear layers FP8 converts: not the output head (its logits feed a softmax, and
    torchtitan keeps it in high precision too), not layers whose dims are not multiples of 16
    (the fp8 GEMM kernels need 16-aligned K and N), not layers matching `keep_patterns`."""

    def keep_fp8(module: nn.Module, fqn: str) -> bool:
        if not isinstance(module, nn.Linear):
            return False
        if fqn.split(".")[-1] in head_names:
            return False
        if module.in_features % 16 or module.out_features % 16:
            return False
        return not any(fnmatch.fnmatch(fqn, p) for p in keep_patterns)

    return keep_fp8


def fp8_gemm_kind(device: torch.device) -> str:
    """'scaled_mm' (hardware fp8 GEMM) on CUDA; 'emulated' elsewhere.

    torch._scaled_mm exists on CPU but measured ~15 MFLOP/s on the development machine (a
    reference kernel), so on CPU torchao's `emulate` mode is used: the operands are really cast
    to fp8 with their scales, then dequantised and multiplied in fp32. That is numerically an fp8
    GEMM with fp32 accumulation, which is what FP8 numerics checks need; its speed means nothing.
    """
    return "scaled_mm" if device.type == "cuda" else "emulated"


def apply_fp8(model: nn.Module, recipe: str | None, keep_patterns: list[str] = (), emulate: bool = False) -> list[str]:
    """Swap eligible nn.Linear layers for torchao Float8Linear in place; returns the converted names.

    A no-op (returns []) when `recipe` is None.
    """
    if recipe is None:
        return []
    # torchao is optional (FP8 policies only) and takes ~0.4 s to import
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    keep = fp8_module_filter(keep_patterns=[p for p in keep_patterns if p != "auto"])
    converted = [name for name, m in model.named_modules() if keep(m, name)]
    config = dataclasses.replace(Float8LinearConfig.from_recipe_name(recipe), emulate=emulate)
    convert_to_float8_training(model, config=config, module_filter_fn=keep)
    return converted


def apply_param_dtype(model: nn.Module, policy: Policy) -> nn.Module:
    """Cast master weights for bf16-true; the other policies keep fp32 weights."""
    if any(p.dtype != policy.param_dtype for p in model.parameters() if p.is_floating_point()):
        model.to(policy.param_dtype)  # skipped when already cast (fake-tensor models cannot be cast)
    return model
