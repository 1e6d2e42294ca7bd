"""One training step, shared by the trainer (`train.loop`), the memory estimator (`train.estimate`)
and the bench's timing worker: the learning-rate schedule, the optimizer, the micro-batches with
their backward, and the validation pass.

`train_step` stops before the update: the caller consults the health check and then calls
`optimizer.step()` (or `scaler.step`) itself, so the update is visible where training is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from trainwise.train.data import StepSampler
from trainwise.train.health_checks import replay_forward
from trainwise.train.parallel import DistContext, grad_sync, mean_over_ranks
from trainwise.train.precision import autocast_context


def lr_at(step: int, peak_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to `min_lr_ratio * peak_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    # decay matrices (weights of Linear/Conv/Embedding); not biases and norm gains (nanoGPT's rule)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


class FixedBatch:
    """The same micro-batch for every step and micro-step (the estimator's traced step)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __call__(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y


def sampled_batches(split, sampler: StepSampler):
    """The trainer's micro-batches: `batches(step, micro)` -> (inputs, targets) of that micro-step."""
    return lambda step, micro: split.batch(sampler.indices(step, micro))


@dataclass
class StepParts:
    """What a step touches, built once by its caller (`build_run`, the estimator, the bench)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    batches: object  # (step, micro) -> (inputs, targets); see sampled_batches / FixedBatch
    loss_fn: object
    policy: object
    device: torch.device
    dist: DistContext
    micro_per_step: int
    grad_clip: float


@dataclass
class StepOutput:
    loss: torch.Tensor  # the global batch's loss, the same on every rank
    grad_norm: torch.Tensor  # before clipping, unscaled
    replay: Callable[[], None]  # re-runs the last forward: the health check names a non-finite layer with it


def train_step(parts: StepParts, step: int) -> StepOutput:
    """Forward and backward over the step's micro-batches, gradients reduced after the last one,
    unscaled (fp16) and clipped. The update is the caller's (see the module note)."""
    p = parts
    loss_sum = torch.zeros((), device=p.device)
    for micro in range(p.micro_per_step):
        x, y = (t.to(p.device, non_blocking=True) for t in p.batches(step, micro))
        with grad_sync(p.model, micro == p.micro_per_step - 1):  # DDP/FSDP2 reduce only after the last micro-batch
            with autocast_context(p.policy, p.device):
                logits = p.model(x)
            # scale the loss to account for gradient accumulation (DDP/FSDP2 average over ranks)
            loss = p.loss_fn(logits, y) / p.micro_per_step
            (p.scaler.scale(loss) if p.scaler else loss).backward()
        loss_sum += loss.detach()
    loss_sum = mean_over_ranks(p.dist, loss_sum)
    if p.scaler:
        p.scaler.unscale_(p.optimizer)  # clip the true gradients, not the scaled ones
    grad_norm = torch.nn.utils.clip_grad_norm_(p.model.parameters(), p.grad_clip if p.grad_clip > 0 else float("inf"))
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP2: a DTensor
    return StepOutput(
        loss_sum, grad_norm, partial(replay_forward, p.model, x, partial(autocast_context, p.policy, p.device))
    )


def wait_for_device(device: torch.device) -> None:
    """Block until the device finished its queued work, so a clock read after it times the step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate_loss(model, split, batches, loss_fn, policy, device, task) -> dict:
    """Mean loss (and accuracy) on fixed validation batches, in the run's compute precision."""
    was_training = model.training
    model.eval()
    total_loss, total_correct, total_n = 0.0, 0, 0
    for idx in batches:
        x, y = (t.to(device, non_blocking=True) for t in split.batch(idx))
        with autocast_context(policy, device):
            logits = model(x)
        total_loss += loss_fn(logits, y).item() * y.numel()
        total_correct += (logits.argmax(-1) == y).sum().item()
        total_n += y.numel()
    model.train(was_training)
    out = {"val_loss": total_loss / total_n, "val_accuracy": total_correct / total_n}
    if task == "lm":
        out["val_bits_per_byte"] = out["val_loss"] / math.log(2)
    return out
