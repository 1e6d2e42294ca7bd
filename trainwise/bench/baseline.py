"""The baseline row: the same model, data and hyper-parameters, trained by a minimal plain-PyTorch
loop with none of trainwise's machinery (no policy, health monitor, memory tracker, checkpoints,
metrics log). Its step time next to the fp32 control's is trainwise's own overhead.

The loop follows nanoGPT's train.py: AdamW, warm-up + cosine learning rate, gradient clipping.
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


def plain_train(model: torch.nn.Module, train_inputs, train_targets, val_batches: list, tc) -> dict:
    """Train `model` for tc.steps steps of tc.global_batch_size examples; return timings and losses.

    `val_batches`: list of (inputs, targets) validated at the end, the same batches as the trainer's.
    """
    torch.manual_seed(tc.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=tc.lr, betas=(tc.beta1, tc.beta2), foreach=True)
    gen = torch.Generator().manual_seed(tc.seed)
    n, micro = len(train_inputs), tc.micro_batch_size
    accum = tc.global_batch_size // micro
    perm, pos, step_ms, losses = torch.randperm(n, generator=gen), 0, [], []
    model.train()
    for step in range(tc.steps):
        for g in opt.param_groups:
            g["lr"] = plain_lr(step, tc.lr, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
        t0 = time.perf_counter()
        total = 0.0
        for _ in range(accum):
            if pos + micro > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos : pos + micro]
            pos += micro
            logits = model(train_inputs[idx])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), train_targets[idx].reshape(-1)) / accum
            loss.backward()
            total += loss.item()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:  # the first step is warm-up, as in the trainer
            step_ms.append((time.perf_counter() - t0) * 1e3)
        losses.append(total)
    model.eval()
    num, den = 0.0, 0
    with torch.no_grad():
        for x, y in val_batches:
            logits = model(x)
            num += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            den += y.numel()
    return {"status": "completed", "steps": tc.steps, "median_step_ms": median(step_ms) if step_ms else None,
            "min_step_ms": min(step_ms) if step_ms else None, "max_step_ms": max(step_ms) if step_ms else None,
            "final_train_loss": sum(losses[-10:]) / len(losses[-10:]), "final_val_loss": num / den, "precision": "fp32", "ac": "none"}
