"""`train(cfg) -> RunResult`: the training loop, readable top to bottom.

AdamW with warm-up + cosine decay, gradient accumulation, gradient clipping, the precision policy
(autocast, dynamic loss scaling for fp16, FP8 via torchao), periodic validation, optional early
stopping, resumable atomic checkpoints, and the run directory of DESIGN.md. The setup is
`build_run` (trainwise.train.run); one step's forward and backward is `train_step`
(trainwise.train.step), which the memory estimator runs too; the health monitor only observes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import torch

from trainwise.config import Config
from trainwise.errors import TrainwiseError
from trainwise.rundir import WriteError
from trainwise.runstatus import RunStatus
from trainwise.train.autoac import confirm_ac_mode
from trainwise.train.memory import measure_step_memory
from trainwise.train.parallel import max_over_ranks, teardown_distributed
from trainwise.train.progress import Progress
from trainwise.train.run import Run, build_run, rebuild_with_ac
from trainwise.train.step import evaluate_loss, lr_at, set_lr, train_step, wait_for_device


def unwrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    model: torch.nn.Module | None = None  # the trained (prepared) model, for in-process evaluation
    workload: object | None = None
    policy: object | None = None


# Over 60 lines (80) and complexity 20 on purpose: the loop is read top to bottom in one sitting
# (nanoGPT's train.py); each branch is one of its steps, and splitting it would hide their order
def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False) -> RunResult:  # noqa: C901
    t_start = time.perf_counter()
    run = build_run(cfg, run_dir, resume)
    tc, model, optimizer, scaler, health, state = cfg.train, run.model, run.optimizer, run.scaler, run.health, run.state
    unit = "tok" if run.workload.task == "lm" else "samples"
    progress = Progress(tc.steps, run.start_step, enabled=cfg.log.progress and run.dist.is_main, unit=unit)
    status, step, compile_warmup_s = RunStatus.COMPLETED, run.start_step, 0.0
    measure_at = run.start_step + 1  # measure the memory of the second step, when AdamW's state exists
    checkpointed_step = step if run.files.resume_from else None
    model.train()
    try:
        for step in range(run.start_step, tc.steps):
            if tc.halt_after_steps and step - run.start_step >= tc.halt_after_steps:
                status = RunStatus.HALTED
                break
            if state.stop_early(tc.early_stopping_patience):  # resumed from an early-stopped run's last checkpoint
                status = RunStatus.EARLY_STOPPED
                break
            lr = set_lr(optimizer, lr_at(step, tc.lr, tc.warmup_steps, tc.steps, tc.min_lr_ratio))
            measure = step == measure_at and not state.memory
            t0 = time.perf_counter()
            with measure_step_memory(model, optimizer, run.device, enabled=measure) as mem:
                out = train_step(run.parts, step)  # forward and backward of the micro-batches, unscale, clip
                verdict = health.check(step, out.loss, out.grad_norm, scaler, replay=out.replay)
                if verdict.stop_reason:  # train.on_nonfinite = 'stop'
                    run.files.fail(verdict.stop_reason)
                    raise TrainwiseError(verdict.stop_reason)
                if scaler is not None:
                    scaler.step(optimizer)  # fp16: GradScaler skips the update itself when gradients are not finite
                    scaler.update()
                elif verdict.finite:  # a non-finite step is skipped (train.on_nonfinite = 'skip')
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                wait_for_device(run.device)  # the clock reads after the device finished the step
            dt_ms = (time.perf_counter() - t0) * 1e3
            stepped = health.after_update(step, verdict, scaler)
            if measure:  # a measured step is not timed
                if keep_memory_measurement(run, mem.result()):  # auto AC rebuilt the model with the next mode
                    model, optimizer, measure_at = run.model, run.optimizer, step + 1  # and measures it again
            elif step == run.start_step and tc.compile:
                compile_warmup_s = dt_ms / 1e3
            elif step > run.start_step:
                state.step_ms.append(dt_ms)  # the first step of an invocation is warm-up, not timed
            loss, done = out.loss.item(), step + 1
            state.record_loss(loss)
            logged = done % tc.log_every == 0 or done == tc.steps
            row = step_fields(run, dt_ms, out.grad_norm, stepped) if logged else {}
            if (tc.eval_every and done % tc.eval_every == 0) or done == tc.steps:
                state.record_eval(evaluate(run))
                row.update(state.val)
            row.update(state.memory if measure else {})
            if row and run.dist.is_main:
                run.files.log_metrics({"step": done, "loss": loss, "lr": lr, **row})
            progress.update(done, loss, run.units_per_step / (dt_ms / 1e3), state.val.get("val_loss"))
            if state.stop_early(tc.early_stopping_patience):
                status, step = RunStatus.EARLY_STOPPED, done
                break
            if tc.checkpoint_every and done % tc.checkpoint_every == 0 and done < tc.steps:
                save_checkpoint(run, done)
                checkpointed_step = done
            step = done
    except WriteError as e:  # a full disk or a read-only folder: one line, the last good checkpoint named
        run.files.fail(str(e))
        raise
    except KeyboardInterrupt:
        run.files.write_summary({"status": RunStatus.INTERRUPTED, "steps": step})
        raise
    finally:
        progress.close()
    if checkpointed_step != step:  # rewriting the same step would only risk the one on disk
        save_checkpoint(run, step)
    if status != RunStatus.HALTED:
        run.files.save_model(model, run.workload)
    summary = summarize(run, status, step, compile_warmup_s if tc.compile else None, t_start)
    if run.dist.is_main:
        run.files.write_summary(summary)
    result = RunResult(run.files.path, summary, unwrap_ddp(model), run.workload, run.policy)
    dist, run, model, optimizer, scaler, health, out, mem = run.dist, *[None] * 7  # see teardown_distributed
    teardown_distributed(dist)
    return result


def keep_memory_measurement(run: Run, memory: dict) -> bool:
    """Keep the measured step's memory; with memory.ac = 'auto', confirm the estimator's choice by
    it, on every rank alike. Returns True when the model was rebuilt with the next AC mode, so the
    next step is measured again."""
    run.state.memory = memory
    if run.cfg.memory.ac != "auto":
        return False
    seen = [v for v in (memory.get("peak_memory_bytes"), memory.get("max_memory_allocated")) if v is not None]
    measured = max_over_ranks(run.dist, max(seen, default=-1))  # -1: this step could not be measured
    why = memory.get("memory_measurement_note", "")
    mode, note, switched = confirm_ac_mode(run.ac_mode, measured if measured >= 0 else None, run.cfg, why)
    run.ac_note = f"{run.ac_note}; {note}"
    if switched:
        rebuild_with_ac(run, mode)  # sets run.ac_mode
        run.state.memory = {}
    return switched


def evaluate(run: Run) -> dict:
    w = run.workload
    return evaluate_loss(run.model, w.val, run.val_batches, w.loss_fn, run.policy, run.device, w.task)


def step_fields(run: Run, dt_ms: float, grad_norm: torch.Tensor, stepped: bool) -> dict:
    """A logged step's row in metrics.jsonl, after step, loss and lr."""
    return {
        "step_ms": dt_ms,
        "tokens_per_s": run.units_per_step / (dt_ms / 1e3),
        "grad_norm": float(grad_norm),
        "stepped": stepped,
        **run.health.log_fields(),
    }


def save_checkpoint(run: Run, step: int) -> None:
    run.files.checkpoint(step, run.model, run.optimizer, run.scaler, run.state.to_history(run.health))


def summarize(run: Run, status: RunStatus, steps: int, compile_warmup_s: float | None, t_start: float) -> dict:
    """summary.json (DESIGN.md, 'The run directory')."""
    state, step_ms, cfg = run.state, run.state.step_ms, run.cfg
    return {
        "status": status,
        "steps": steps,
        "final_train_loss": sum(state.recent_losses) / len(state.recent_losses) if state.recent_losses else None,
        "final_val_loss": state.val.get("val_loss"),
        "final_val_accuracy": state.val.get("val_accuracy"),
        "median_step_ms": median(step_ms) if step_ms else None,
        "min_step_ms": min(step_ms) if step_ms else None,
        "max_step_ms": max(step_ms) if step_ms else None,
        "timed_steps": len(step_ms),
        "tokens_per_s": run.units_per_step / (median(step_ms) / 1e3) if step_ms else None,
        "throughput_unit": "tokens" if run.workload.task == "lm" else "samples",
        "compile_warmup_s": compile_warmup_s,
        **state.memory,
        "precision": run.policy.name,
        "ac": run.ac_mode,
        "ac_requested": cfg.memory.ac,
        "ac_note": run.ac_note or None,
        "strategy": cfg.parallel.strategy,
        "world_size": run.dist.world_size,
        "fp8_layers": len(run.prepared.fp8_layers),
        **run.health.summary(steps),
        "wall_s": time.perf_counter() - t_start,
    }
