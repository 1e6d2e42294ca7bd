"""Activation checkpointing (AC): trade recomputation in backward for activation memory.

Modes, in order of the forward compute they repeat in backward (`AC_COST_ORDER`):

- none: every block keeps what its backward needs.
- selective: op-level selective AC (`create_selective_checkpoint_contexts`) inside each block: the
  outputs of matmuls (mm/addmm/bmm/linear, fp8 `_scaled_mm`), attention kernels and convolutions
  are saved; every other op (LayerNorm, GELU, residual adds, dropout, views, dtype casts, fp8
  amax/scale arithmetic) is recomputed in backward. Those ops are memory-bound and cheap to redo,
  while a matmul is what costs FLOPs: no matmul runs twice.
  One refinement (`_TrailingMatmulPruner`): when the block's last saved op is a matmul followed
  only by residual adds and views (a pre-norm block's output projection, `x + proj(h)`), its
  output is dropped from the cache once the forward ends. Backward never reads that output, and
  non-reentrant recomputation stops as soon as the last tensor backward needs is re-saved, which
  for that matmul is its input: it saves its inputs before it runs, so it is not rerun either.
  On lm-tiny this is one block-width of eleven (see benchmarks/memory_ac_modes.py).
- every-n: full checkpointing of every n-th block (`memory.ac_every`).
- full: every block keeps only its input and reruns its whole forward in backward.
- auto: the first of these, in this order, whose estimated peak fits `memory.budget_gib`
  (trainwise.train.autoac), confirmed by measuring the first steps.

Only non-reentrant checkpointing is used: reentrant checkpointing silently drops gradients when a
block's inputs do not require grad (huggingface/transformers#21381).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from trainwise.errors import ConfigError
from trainwise.train.names import AC_COST_ORDER  # noqa: F401 (the modes' order, public here)

# Ops whose outputs selective AC keeps: the expensive ones (matmuls, attention). Everything else
# (GELU, LayerNorm, adds, dropout masks, views) is recomputed in backward, which is cheap because
# it is memory-bound. This is torchtitan's op-level SAC policy minus its every-other-mm rule.
_SAVE_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.linear.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten.convolution.default,
}
if hasattr(torch.ops.aten, "_scaled_mm"):
    _SAVE_OPS.add(torch.ops.aten._scaled_mm.default)


# Matmuls whose backward reads only their inputs, which autograd saves before the kernel runs:
# the trailing one of a block can be dropped from the cache without being recomputed.
_INPUT_ONLY_BACKWARD_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.linear.default,
    torch.ops.aten.convolution.default,
}
# Ops that may follow the trailing matmul without needing its output in backward.
_PASS_THROUGH_OPS = {
    torch.ops.aten.add.Tensor,
    torch.ops.aten.view.default,
    torch.ops.aten._unsafe_view.default,
    torch.ops.aten.reshape.default,
    torch.ops.aten.transpose.int,
    torch.ops.aten.t.default,
}


def _selective_policy(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in _SAVE_OPS else CheckpointPolicy.PREFER_RECOMPUTE


class _TrailingMatmulPruner:
    """Selective AC contexts for one checkpointed forward, plus the trailing-matmul refinement.

    Records the ops of the forward; afterwards, if the last saved op is a matmul followed only by
    pass-through ops (residual adds, views), replaces its cached output by the recompute marker.
    Recomputation never reaches it (see the module note), so this frees one saved tensor per block
    for free. Falls back to plain selective AC if torch's SAC internals are not as expected.
    """

    def __init__(self):
        self.last_saved = None  # (op, per-op index) of the last MUST_SAVE op
        self.after_last_saved: list = []
        self.counts: dict = {}
        self.forward_mode = None

    def policy(self, ctx, op, *args, **kwargs):
        idx = self.counts.get(op, 0)
        self.counts[op] = idx + 1
        decision = _selective_policy(ctx, op, *args, **kwargs)
        if decision == CheckpointPolicy.MUST_SAVE:
            self.last_saved, self.after_last_saved = (op, idx), []
        else:
            self.after_last_saved.append(op)
        return decision

    def contexts(self):
        fwd, recompute = create_selective_checkpoint_contexts(self.policy)
        self.forward_mode = fwd
        return fwd, recompute

    def prune(self) -> bool:
        """Drop the trailing matmul's cached output; True if it was dropped."""
        marker = getattr(torch.utils.checkpoint, "_RECOMPUTE", None)
        storage = getattr(self.forward_mode, "storage", None)
        if marker is None or storage is None or self.last_saved is None:
            return False
        op, idx = self.last_saved
        if op not in _INPUT_ONLY_BACKWARD_OPS or any(o not in _PASS_THROUGH_OPS for o in self.after_last_saved):
            return False
        entries = storage.get(op)
        if not isinstance(entries, dict) or idx not in entries:
            return False
        entries[idx] = marker
        return True


class CheckpointedBlock(nn.Module):
    """Runs the wrapped block under non-reentrant checkpointing (full or selective)."""

    def __init__(self, block: nn.Module, selective: bool):
        super().__init__()
        self.block = block
        self.selective = selective

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():
            return self.block(*args, **kwargs)  # evaluation: nothing is saved for backward anyway
        if not self.selective:
            return checkpoint(self.block, *args, use_reentrant=False, **kwargs)
        pruner = _TrailingMatmulPruner()
        out = checkpoint(self.block, *args, use_reentrant=False, context_fn=pruner.contexts, **kwargs)
        pruner.prune()
        return out


def find_blocks(
    model: nn.Module, block_classes: tuple[type, ...] = (), block_class_names: list[str] = ()
) -> list[tuple[str, nn.Module]]:
    """Modules whose class is a block (by type, or by class name from config), outermost only."""
    found = []
    for name, m in model.named_modules():
        is_block = isinstance(m, block_classes) if block_classes else False
        is_block = is_block or type(m).__name__ in block_class_names
        if is_block and not any(name.startswith(prefix + ".") for prefix, _ in found):
            found.append((name, m))
    return found


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def apply_ac(
    model: nn.Module, mode: str, every: int = 2, block_classes: tuple[type, ...] = (), block_class_names: list[str] = ()
) -> nn.Module:
    """Wrap blocks for activation checkpointing in place; a no-op for mode 'none'.

    'auto' must be resolved to a concrete mode first (trainwise.train.autoac.resolve_ac_mode).
    """
    if mode == "none":
        return model
    if mode not in AC_COST_ORDER:
        raise ConfigError(
            f"memory.ac = {mode!r}: apply_ac takes one of {', '.join(AC_COST_ORDER)} ('auto' is resolved before)"
        )
    blocks = find_blocks(model, block_classes, block_class_names)
    if not blocks:
        looked_for = [c.__name__ for c in block_classes] + list(block_class_names)
        raise ConfigError(
            f"memory.ac = {mode!r}: the model has no recognisable blocks (looked for module classes: "
            f"{', '.join(looked_for) or 'none given'}); name your block classes with "
            "memory.block_classes = ['MyBlock']"
        )
    for i, (name, block) in enumerate(blocks):
        if mode == "every-n" and i % every:
            continue
        _set_submodule(model, name, CheckpointedBlock(block, selective=(mode == "selective")))
    return model
