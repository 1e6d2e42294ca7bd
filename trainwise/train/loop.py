"""`train(cfg) -> RunResult`: the training loop, readable top to bottom.

AdamW with warm-up + cosine decay, gradient accumulation, gradient clipping, the precision policy
(autocast, dynamic loss scaling for fp16, FP8 via torchao), periodic validation, optional early
stopping, resumable atomic checkpoints, and the run directory of DESIGN.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import torch

from trainwise.config import Config
from trainwise.env import pick_device
from trainwise.errors import TrainwiseError
from trainwise.train.autoac import confirm_ac_mode, resolve_ac_mode
from trainwise.rundir import WriteError
from trainwise.train.checkpoint import load_checkpoint
from trainwise.train.data import StepSampler, eval_indices
from trainwise.numerics.hybrid import resolve_auto_split
from trainwise.train.health import HealthMonitor, NonFiniteError, replay_forward
from trainwise.train.memory import measure_step_memory
from trainwise.train.parallel import (
    broadcast_from_main,
    elastic_restart,
    grad_sync,
    kill_for_test,
    local_device,
    mean_over_ranks,
    setup_distributed,
    shard_fn,
    teardown_distributed,
)
from trainwise.train.precision import autocast_context, get_policy, make_grad_scaler
from trainwise.train.preflight import check_model_output
from trainwise.train.progress import Progress
from trainwise.train.rundir_setup import RunFiles, build_workload, default_run_dir, open_run_dir
from trainwise.train.setup import prepare


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    model: torch.nn.Module | None = None  # the trained (prepared) model, for in-process evaluation
    workload: object | None = None
    policy: object | None = None


def lr_at(step: int, peak_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up to `peak_lr`, then cosine decay to `min_lr_ratio * peak_lr` at `total_steps`."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    # decay matrices (weights of Linear/Conv/Embedding); not biases and norm gains (nanoGPT's rule)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


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


@dataclass
class StepParts:
    """What one optimizer step touches, built once by `train()`; the bench's timing worker builds
    the same parts and calls the same `train_step`, so the step it times is the trainer's step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    health: HealthMonitor
    workload: object
    sampler: StepSampler
    policy: object
    device: torch.device
    dist: object
    micro_per_step: int
    grad_clip: float


def train_step(parts: StepParts, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Optimizer step `step` (its learning rate already set): the micro-batches under autocast,
    gradients reduced after the last one, clipping, the health-checked optimizer step, zero_grad;
    the device is synchronised before returning, so a clock read around the call times the step.
    Returns (the global batch's loss, the gradient norm, whether the optimizer stepped)."""
    p = parts
    model, device, policy = p.model, p.device, p.policy
    loss_sum = torch.zeros((), device=device)
    for micro in range(p.micro_per_step):
        x, y = (t.to(device, non_blocking=True) for t in p.workload.train.batch(p.sampler.indices(step, micro)))
        with grad_sync(model, micro == p.micro_per_step - 1):  # DDP/FSDP2 reduce only after the last micro-batch
            with autocast_context(policy, device):
                logits = model(x)
            # scale the loss to account for gradient accumulation (DDP/FSDP2 average over ranks)
            loss = p.workload.loss_fn(logits, y) / p.micro_per_step
            (p.scaler.scale(loss) if p.scaler else loss).backward()
        loss_sum += loss.detach()
    loss_sum = mean_over_ranks(p.dist, loss_sum)  # the global batch's loss, the same on every rank
    if p.scaler:
        p.scaler.unscale_(p.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip if p.grad_clip > 0 else float("inf"))
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # FSDP2: a DTensor
    stepped = p.health.step(
        step,
        loss_sum,
        grad_norm,
        p.optimizer,
        p.scaler,
        replay=lambda: replay_forward(model, x, lambda: autocast_context(policy, device)),
    )
    p.optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the clock reads after the device finished the step
    return loss_sum, grad_norm, stepped


STEP_MS_KEPT = 10_000  # step times carried across a resume: the median of the newest this many


def _resumable(
    history: dict, val: dict, memory: dict, health, recent_losses: list[float], step_ms: list[float]
) -> dict:
    """What a checkpoint keeps besides the tensors: early stopping, the last evaluation, the memory
    measurement, health counters, and what the summary needs (losses of the last steps, step times)."""
    return {
        **history,
        "val": val,
        "memory": memory,
        "health": health.state(),
        "recent_losses": recent_losses,
        "step_ms": step_ms[-STEP_MS_KEPT:],
    }


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False) -> RunResult:
    t_start = time.perf_counter()
    tc = cfg.train
    device = pick_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    policy = get_policy(cfg.precision.policy, device, cfg.precision.allow_tf32)
    dist = setup_distributed(cfg.parallel.strategy, cfg.parallel.backend, device)
    device = local_device(dist, device)
    micro_per_step = tc.global_batch_size // (tc.micro_batch_size * dist.world_size)
    if micro_per_step * tc.micro_batch_size * dist.world_size != tc.global_batch_size:
        raise TrainwiseError(
            f"train.global_batch_size = {tc.global_batch_size} cannot be made from train.micro_batch_size = {tc.micro_batch_size} x world size {dist.world_size} x accumulation steps; make it a multiple of {tc.micro_batch_size * dist.world_size}"
        )

    # Seed before the workload builds the model, so initial weights depend only on train.seed.
    torch.manual_seed(tc.seed)
    workload = build_workload(cfg)
    check_model_output(workload, tc.micro_batch_size)  # output shape vs task and classes; same verdict on every rank
    ac_mode, ac_note = resolve_ac_mode(cfg, workload, dist.world_size)  # 'auto' -> a concrete mode
    keep_high_precision, fp8_auto = resolve_auto_split(
        cfg, workload, policy
    )  # ['auto'] -> layer names (numerics probe)
    prepared = prepare(
        workload.model,
        policy=policy,
        device=device,
        ac_mode=ac_mode,
        ac_every=cfg.memory.ac_every,
        compile=tc.compile,
        block_classes=workload.block_classes,
        block_class_names=cfg.memory.block_classes,
        keep_high_precision=keep_high_precision,
        shard=shard_fn(
            cfg.parallel.strategy, dist, device, policy, cfg.parallel, workload.block_classes, cfg.memory.block_classes
        ),
    )
    model = prepared.model
    prepared.fp8_auto = fp8_auto
    optimizer = make_optimizer(model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2))
    scaler = make_grad_scaler(policy, device, cfg.precision.init_scale)
    sampler = StepSampler(
        len(workload.train), tc.global_batch_size, tc.micro_batch_size, dist.world_size, dist.rank, tc.seed
    )
    val_batches = eval_indices(len(workload.val), tc.eval_batches, tc.micro_batch_size)
    units_per_step = workload.units_per_example * tc.global_batch_size  # tokens (lm) or samples per optimizer step

    # Everything is validated: only now does the run directory appear. All ranks agree on its path,
    # and a group restarted by torchrun after a failure resumes from the last checkpoint by itself.
    run_dir, resume = broadcast_from_main(
        dist,
        (
            run_dir or default_run_dir(cfg),
            resume or (elastic_restart(dist) and (Path(run_dir or "") / "config.toml").is_file()),
        ),
    )
    run = open_run_dir(cfg, run_dir, resume, workload, policy, prepared, dist, device)
    start_step, history = 0, {"best_val": float("inf"), "bad_evals": 0}
    if run.resume_from is not None:  # open_run_dir verified its manifest and chose it
        state = load_checkpoint(run.resume_from, model, optimizer, scaler, verify=False)
        start_step, history = state["step"], state["history"]
    health = HealthMonitor(policy, cfg.precision, tc.on_nonfinite, model, state=history.get("health"))
    parts = StepParts(
        model, optimizer, scaler, health, workload, sampler, policy, device, dist, micro_per_step, tc.grad_clip
    )

    # carried in checkpoints, so a resumed run's summary equals an uninterrupted run's
    step_ms: list[float] = history.get("step_ms", [])
    recent_losses: list[float] = history.get("recent_losses", [])
    val: dict = history.get("val", {})
    memory: dict = history.get("memory", {})
    compile_warmup_s = 0.0
    measure_at = start_step + 1
    progress = Progress(
        tc.steps,
        start_step,
        enabled=cfg.log.progress and dist.is_main,
        unit="tok" if workload.task == "lm" else "samples",
    )
    status, step, checkpointed_step = "completed", start_step, start_step if run.resume_from else None
    model.train()
    try:
        for step in range(start_step, tc.steps):
            if tc.halt_after_steps and step - start_step >= tc.halt_after_steps:
                status = "halted"
                break
            if tc.early_stopping_patience and history["bad_evals"] >= tc.early_stopping_patience:
                status = "early_stopped"  # resumed from the checkpoint an early-stopped run wrote last
                break
            lr = lr_at(step, tc.lr, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            measure_memory = step == measure_at and not memory
            t0 = time.perf_counter()
            with measure_step_memory(model, optimizer, device, enabled=measure_memory) as mem:
                loss_sum, grad_norm, stepped = train_step(parts, step)
            dt_ms = (time.perf_counter() - t0) * 1e3
            if measure_memory:
                memory = mem.result()
                if cfg.memory.ac == "auto":  # confirm the estimator's choice by this measurement
                    ac_mode, note, switched = confirm_ac_mode(model, ac_mode, memory, cfg, workload.block_classes)
                    ac_note, memory, measure_at = f"{ac_note}; {note}", ({} if switched else memory), step + 1
            elif step == start_step and tc.compile:
                compile_warmup_s = dt_ms / 1e3
            elif step > start_step:
                step_ms.append(dt_ms)  # the first step of an invocation is warm-up, not timed
            loss_value = loss_sum.item()
            recent_losses = (recent_losses + [loss_value])[-10:]
            done = step + 1
            row = None
            if done % tc.log_every == 0 or done == tc.steps:
                row = {
                    "step": done,
                    "loss": loss_value,
                    "lr": lr,
                    "step_ms": dt_ms,
                    "tokens_per_s": units_per_step / (dt_ms / 1e3),
                    "grad_norm": float(grad_norm),
                    "stepped": stepped,
                    **health.log_fields(),
                }
            if (tc.eval_every and done % tc.eval_every == 0) or done == tc.steps:
                val = evaluate_loss(model, workload.val, val_batches, workload.loss_fn, policy, device, workload.task)
                row = {**(row or {"step": done, "loss": loss_value, "lr": lr}), **val}
                if val["val_loss"] < history["best_val"] - 1e-6:
                    history["best_val"], history["bad_evals"] = val["val_loss"], 0
                else:
                    history["bad_evals"] += 1
            if measure_memory and memory:
                row = {**(row or {"step": done, "loss": loss_value, "lr": lr}), **memory}
            if row is not None and dist.is_main:
                run.log_metrics(row)
            progress.update(done, loss_value, units_per_step / (dt_ms / 1e3), val.get("val_loss"))
            if tc.early_stopping_patience and history["bad_evals"] >= tc.early_stopping_patience:
                status = "early_stopped"
                step = done
                break
            if tc.checkpoint_every and done % tc.checkpoint_every == 0 and done < tc.steps:
                run.checkpoint(
                    done, model, optimizer, scaler, _resumable(history, val, memory, health, recent_losses, step_ms)
                )
                checkpointed_step = done
                kill_for_test(dist, done)
            step = done
    except NonFiniteError as e:
        status = "failed"
        run.fail(str(e))
        raise TrainwiseError(str(e)) from None
    except WriteError as e:  # a full disk or a read-only folder: one line, the last good checkpoint named
        status = "failed"
        run.fail(str(e))
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        progress.close()
        if status == "interrupted":
            run.write_summary({"status": "interrupted", "steps": step})
    final_step = step
    if checkpointed_step != final_step:  # rewriting the same step would only risk the one on disk
        run.checkpoint(
            final_step, model, optimizer, scaler, _resumable(history, val, memory, health, recent_losses, step_ms)
        )
        kill_for_test(dist, final_step)  # the tests' kill between the last checkpoint and summary.json
    if status != "halted":
        run.save_model(model, workload)
    summary = {
        "status": status,
        "steps": final_step,
        "final_train_loss": sum(recent_losses) / len(recent_losses) if recent_losses else None,
        "final_val_loss": val.get("val_loss"),
        "final_val_accuracy": val.get("val_accuracy"),
        "median_step_ms": median(step_ms) if step_ms else None,
        "min_step_ms": min(step_ms) if step_ms else None,
        "max_step_ms": max(step_ms) if step_ms else None,
        "timed_steps": len(step_ms),
        "tokens_per_s": units_per_step / (median(step_ms) / 1e3) if step_ms else None,
        "throughput_unit": "tokens" if workload.task == "lm" else "samples",
        "compile_warmup_s": compile_warmup_s if tc.compile else None,
        **memory,
        "precision": policy.name,
        "ac": ac_mode,
        "ac_requested": cfg.memory.ac,
        "ac_note": ac_note or None,
        "strategy": cfg.parallel.strategy,
        "world_size": dist.world_size,
        "fp8_layers": len(prepared.fp8_layers),
        **health.summary(final_step),
        "wall_s": time.perf_counter() - t_start,
    }
    if dist.is_main:
        run.write_summary(summary)
    teardown_distributed(dist)
    return RunResult(run.path, summary, model, workload, policy)
