"""Predict a training step's peak memory without training: `trainwise estimate`.

The workload's model is copied into torch's FakeTensorMode (tensors with shapes, dtypes and
storages but no data, like the meta device), prepared exactly as the trainer prepares it (FP8,
precision, activation checkpointing, through `prepare()`), and the trainer's own step (`train_step`
of trainwise.train.step, then AdamW's update) is traced on a fake micro-batch under the same
storage tracker that measures real runs (MemTracker). So the estimate includes activations, unlike
`accelerate estimate-memory`, which counts parameters only, and it follows the precision policy,
the AC mode, the micro-batch and the sequence length because it runs the very code that the
trainer runs.

Data parallelism is applied on top as a model of what each rank holds: DDP keeps a flat copy of
all gradients in its buckets; FSDP2 divides parameters, gradients and optimizer state by the
world size and adds the gathered parameters of the blocks in flight. These two are arithmetic,
not traced (one process cannot trace a collective).
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from trainwise.config import Config
from trainwise.env import pick_device
from trainwise.errors import TrainwiseError
from trainwise.train.ac import CheckpointedBlock, find_blocks
from trainwise.train.memory import measure_step_memory, tracker_peak
from trainwise.train.parallel import DistContext
from trainwise.train.precision import get_policy
from trainwise.train.setup import prepare
from trainwise.train.step import FixedBatch, StepParts, make_optimizer, train_step
from trainwise.workloads.base import Workload

GIB = 1024**3


def _state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    opt = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    return {"parameters": params, "gradients": grads, "optimizer_state": opt}


def _largest_block_bytes(model: nn.Module, block_classes: tuple, block_class_names: list[str]) -> int:
    blocks = find_blocks(model, tuple(block_classes) + (CheckpointedBlock,), block_class_names)
    sizes = [sum(p.numel() * p.element_size() for p in b.parameters()) for _, b in blocks]
    return max(sizes, default=0)


def trace_step(cfg: Config, workload: Workload, *, ac_mode: str, micro_batch_size: int, fake: bool = True) -> dict:
    """Run the trainer's step (`train_step`: forward, backward, clip; then AdamW's update) on one
    micro-batch and track storages.

    fake=True traces on fake tensors (an estimate, no data, seconds); fake=False runs real tensors
    (a measurement, used by fit-batch to confirm its answer). The optimizer state is created first
    (an AdamW step on zero gradients), because the trainer measures its second step. With gradient
    accumulation two micro-batches run per step: from the second on, gradients are already
    allocated, so more change nothing.
    """
    device = pick_device(cfg.train.device)
    policy = get_policy(cfg.precision.policy, device)
    tc = cfg.train
    x, y = workload.train.batch(torch.arange(micro_batch_size) % len(workload.train))
    mode = FakeTensorMode() if fake else contextlib.nullcontext()
    with mode:
        model = _fake_copy(workload.model, mode, policy.param_dtype, device) if fake else copy.deepcopy(workload.model)
        prepared = prepare(
            model,
            policy=policy,
            device=device,
            ac_mode=ac_mode,
            ac_every=cfg.memory.ac_every,
            block_classes=workload.block_classes,
            block_class_names=cfg.memory.block_classes,
            keep_high_precision=cfg.precision.keep_high_precision,
        )
        model = prepared.model
        model.train()
        optimizer = make_optimizer(model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2))
        xs, ys = (mode.from_tensor(x), mode.from_tensor(y)) if fake else (x, y)
        # no loss scaler: GradScaler's scale is one scalar, and a fake tensor cannot hold its value
        n_micro = 1 if tc.global_batch_size <= micro_batch_size else 2
        parts = StepParts(
            model,
            optimizer,
            None,
            FixedBatch(xs, ys),
            workload.loss_fn,
            policy,
            device,
            DistContext(),
            n_micro,
            tc.grad_clip,
        )
        # the trainer measures its second step, when AdamW's state exists: create it without a pass
        for p in model.parameters():
            p.grad = torch.zeros_like(p) if p.requires_grad else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with measure_step_memory(model, optimizer, device) as mem:
            train_step(parts, step=0)
            optimizer.step()  # the trainer's update when the step is finite (trainwise.train.loop)
            optimizer.zero_grad(set_to_none=True)
        if mem.error:
            raise TrainwiseError(f"cannot trace the step's memory: {mem.error}")
        out = tracker_peak(mem.tracker, device)
        out["state_bytes"] = _state_bytes(model, optimizer)
        out["largest_block_bytes"] = _largest_block_bytes(model, workload.block_classes, cfg.memory.block_classes)
    return out


def _fake_copy(model: nn.Module, fake_mode, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """A copy of `model` whose parameters and buffers are fake tensors (no data), already in the
    master-weight dtype and on `device`: a fake model cannot be cast or moved after it is built
    (its tensors cannot be swapped), so prepare() must find nothing left to do there."""

    def fake(t: torch.Tensor) -> torch.Tensor:
        f = fake_mode.from_tensor(t).to(device)
        return f.to(dtype) if f.is_floating_point() else f

    with torch.no_grad():
        memo = {id(p): nn.Parameter(fake(p), requires_grad=p.requires_grad) for p in model.parameters()}
        memo.update({id(b): fake(b) for b in model.buffers()})
    return copy.deepcopy(model, memo)


def apply_data_parallel(traced: dict, strategy: str, world_size: int, reshard_after_forward: bool = True) -> dict:
    """What one rank holds under DDP / FSDP2, from a single-process trace (see the module note)."""
    b = dict(traced["memory_breakdown"])
    extra = 0
    if strategy == "ddp" and world_size > 1:
        extra = traced["state_bytes"]["gradients"]  # the bucket buffers: one flat copy of the gradients
    elif strategy == "fsdp2":
        for part in ("parameters", "gradients", "optimizer_state"):
            b[part] = -(-b[part] // world_size)
        # gathered parameters: the block computing plus the one prefetched, or all of them kept
        # gathered after forward when reshard_after_forward is off
        full = traced["state_bytes"]["parameters"]
        extra = 2 * traced["largest_block_bytes"] if reshard_after_forward else full
        extra = min(extra, full) * (world_size > 1)
    b["other"] = b.get("other", 0) + extra
    total = sum(b.values())
    state = {k: (-(-v // world_size) if strategy == "fsdp2" else v) for k, v in traced["state_bytes"].items()}
    return {
        "peak_memory_bytes": total,
        "peak_activation_bytes": b["activations"],
        "memory_breakdown": b,
        "parameter_state_bytes": sum(state.values()),
    }


def estimate_memory(
    cfg: Config,
    workload: Workload,
    *,
    ac_mode: str | None = None,
    micro_batch_size: int | None = None,
    world_size: int = 1,
) -> dict:
    """Predicted peak memory per rank (bytes) and its breakdown, for `cfg` with optional overrides."""
    mode = ac_mode or cfg.memory.ac
    mb = micro_batch_size or cfg.train.micro_batch_size
    traced = trace_step(cfg, workload, ac_mode=mode, micro_batch_size=mb)
    out = apply_data_parallel(traced, cfg.parallel.strategy, world_size, cfg.parallel.reshard_after_forward)
    shape = tuple(workload.train.inputs.shape[1:])
    out["inputs"] = {
        "precision": cfg.precision.policy,
        "ac": mode,
        "micro_batch_size": mb,
        "sequence_length": shape[0] if workload.task == "lm" else None,
        "example_shape": list(shape),
        "world_size": world_size,
        "strategy": cfg.parallel.strategy,
        "fsdp_shard_factor": world_size if cfg.parallel.strategy == "fsdp2" else 1,
    }
    out["method"] = "fake-tensor trace of one training step under MemTracker" + (
        f"; {cfg.parallel.strategy} per-rank arithmetic" if cfg.parallel.strategy != "single" else ""
    )
    return out
