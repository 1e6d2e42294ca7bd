"""`prepare()`: the only place that applies the techniques, and the only place that orders them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from trainwise.train.ac import CheckpointedBlock, apply_ac, find_blocks
from trainwise.train.precision import Policy, apply_fp8, apply_param_dtype, fp8_gemm_kind


@dataclass
class Prepared:
    model: nn.Module
    fp8_layers: list[str] = field(default_factory=list)
    compiled_blocks: int = 0
    keep_high_precision: list[str] = field(default_factory=list)  # the layer patterns FP8 left alone
    # with precision.keep_high_precision = ['auto']: the numerics probe's split and why (env.json);
    # decided before prepare() (trainwise.numerics.hybrid.resolve_auto_split), recorded here
    fp8_auto: dict | None = None


def apply_compile(
    model: nn.Module, enabled: bool, block_classes: tuple[type, ...] = (), block_class_names: list[str] = ()
) -> int:
    """Compile each block with torch.compile in place (per block, like torchtitan: smaller graphs,
    faster compiles, and the checkpoint wrapper stays outside the compiled region). Returns the
    number of compiled blocks; a no-op when disabled."""
    if not enabled:
        return 0
    blocks = find_blocks(model, block_classes + (CheckpointedBlock,), block_class_names)
    n = 0
    for _, block in blocks:
        target = block.block if isinstance(block, CheckpointedBlock) else block
        target.compile()
        n += 1
    if n == 0:  # no blocks: compile the whole model
        model.compile()
        n = 1
    return n


def prepare(
    model: nn.Module,
    *,
    policy: Policy,
    device: torch.device,
    ac_mode: str = "none",
    ac_every: int = 2,
    compile: bool = False,
    block_classes: tuple[type, ...] = (),
    block_class_names: list[str] = (),
    keep_high_precision: list[str] = (),
    shard=None,
) -> Prepared:
    """Apply the techniques to `model` in the one order known to work (torchtitan's):

    1. quantize: FP8 swaps nn.Linear for Float8Linear. It must see the plain modules, before any
       wrapper hides them, and before sharding (FP8 after FSDP breaks its weight casts).
    2. activation checkpointing per block: wraps the (possibly FP8) blocks.
    3. compile per block: compiling inside the checkpoint wrapper avoids the known compile+AC
       graph breaks of compiling a model whose blocks are wrapped afterwards.
    4. shard (DDP / FSDP2): last, so it wraps the final module structure; `shard` is a callable
       (model) -> model supplied by the distributed setup, or None for one process.
    """
    if any(t.device != device for t in model.parameters()):  # skip when already there: fake-tensor
        model.to(device)  # models (trainwise estimate) cannot be moved, and need not be
    fp8_layers = apply_fp8(
        model, policy.fp8_recipe, keep_patterns=list(keep_high_precision), emulate=fp8_gemm_kind(device) == "emulated"
    )
    apply_param_dtype(model, policy)
    apply_ac(model, ac_mode, ac_every, block_classes, block_class_names)
    n_compiled = apply_compile(model, compile, block_classes, block_class_names)
    if shard is not None:
        model = shard(model)
    return Prepared(
        model=model, fp8_layers=fp8_layers, compiled_blocks=n_compiled, keep_high_precision=list(keep_high_precision)
    )
