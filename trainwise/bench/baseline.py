"""The baseline row: the same model, data and hyper-parameters, trained by a minimal plain-PyTorch
loop with none of trainwise's machinery (no policy, health monitor, memory tracker, checkpoints,
metrics log). Its step time next to the fp32 control's is trainwise's own overhead.

The loop follows nanoGPT's train.py: AdamW, warm-up + cosine learning rate, gradient clipping. It
runs on the same device as the variants (model and batches moved there) and synchronises a GPU
before reading the clock, as any honest timing must; otherwise the comparison would set a CPU
loop, or a GPU loop timed before its kernels finished, against trainwise's synchronised step.
"""

from __future__ import annotations

import math
import time
from statistics import median

import torch


def plain_lr(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    # written out here (not imported from the trainer) so the baseline shares no trainwise code
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def plain_optimizer(model: torch.nn.Module, tc, device: torch.device) -> torch.optim.AdamW:
    """Move `model` to `device` and build its AdamW (decay on matrices only, as nanoGPT)."""
    model.to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.lr,
        betas=(tc.beta1, tc.beta2),
        foreach=True,
    )


def plain_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, micro_batches: list, grad_clip: float, device: torch.device
) -> torch.Tensor:
    """One optimizer step over `micro_batches` [(inputs, targets), ...], moved to `device`; the
    device is synchronised before returning. Returns the step's mean loss as a tensor on `device`."""
    total = torch.zeros((), device=device)
    for x, y in micro_batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) / len(
            micro_batches
        )
        loss.backward()
        total += loss.detach()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return total


class PlainBatches:
    """Micro-batches of random permutations of the training split, drawn as nanoGPT draws them."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, micro: int, accum: int, seed: int):
        self.inputs, self.targets, self.micro, self.accum = inputs, targets, micro, accum
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(len(inputs), generator=self.gen), 0

    def next_step(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for _ in range(self.accum):
            if self.pos + self.micro > len(self.inputs):
                self.perm, self.pos = torch.randperm(len(self.inputs), generator=self.gen), 0
            idx = self.perm[self.pos : self.pos + self.micro]
            self.pos += self.micro
            out.append((self.inputs[idx], self.targets[idx]))
        return out


def plain_train(
    model: torch.nn.Module, train_inputs, train_targets, val_batches: list, tc, device: torch.device | str = "cpu"
) -> dict:
    """Train `model` on `device` for tc.steps steps of tc.global_batch_size examples; return timings and losses.

    `val_batches`: list of (inputs, targets) validated at the end, the same batches as the trainer's.
    """
    device = torch.device(device)
    torch.manual_seed(tc.seed)
    opt = plain_optimizer(model, tc, device)
    batches = PlainBatches(
        train_inputs, train_targets, tc.micro_batch_size, tc.global_batch_size // tc.micro_batch_size, tc.seed
    )
    step_ms, losses = [], []
    model.train()
    for step in range(tc.steps):
        for g in opt.param_groups:
            g["lr"] = plain_lr(step, tc.lr, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
        t0 = time.perf_counter()
        loss = plain_step(
            model, opt, batches.next_step(), tc.grad_clip, device
        )  # fetching the batch is part of the step, as in the trainer
        if step > 0:  # the first step is warm-up, as in the trainer
            step_ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(loss.item())
    model.eval()
    num, den = 0.0, 0
    with torch.no_grad():
        for x, y in val_batches:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            num += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            den += y.numel()
    return {
        "status": "completed",
        "steps": tc.steps,
        "median_step_ms": median(step_ms) if step_ms else None,
        "min_step_ms": min(step_ms) if step_ms else None,
        "max_step_ms": max(step_ms) if step_ms else None,
        "final_train_loss": sum(losses[-10:]) / len(losses[-10:]),
        "final_val_loss": num / den,
        "precision": "fp32",
        "ac": "none",
        "device": device.type,
    }
