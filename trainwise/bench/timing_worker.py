"""One bench variant's training step, timed on request: `python -m trainwise.bench.timing_worker VARIANT_DIR`.

The process builds the variant as the trainer built it (trainwise's variants: the same workload,
`prepare()`, optimizer, loss scaler and health monitor, restored from the training run's last
checkpoint so fp16's loss scale is the calibrated one; the baseline: the plain-PyTorch loop's
model and optimizer), says it is ready, then blocks on stdin, so that it computes only when the
parent asks (`trainwise.bench.timing` drives the rounds). One JSON command per line; one JSON
reply per line on the original stdout:

  {"warmup": k}        k untimed steps                   -> {"ok": true}
  {"run": k}           k timed steps                     -> {"step_ms": [...]}
  {"gemm_peak": "bf16"} GFLOP/s of the model's own matmul shapes in that dtype -> {"gemm_gflops": x, "gemm_shapes": n}
  {"quit": true}       exit

Anything else the process prints goes to stderr (the variant's timing.log), so it cannot garble
a reply. A failure is a reply {"error": "..."} followed by exit.

TRAINWISE_TIMING_FAULT="LABEL=crash" makes the variant labelled LABEL die (SIGKILL) at its first
timed round: how the tests show that a timing process that dies leaves the others timed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch

from trainwise.bench.baseline import PlainBatches, plain_optimizer, plain_step
from trainwise.config import load_config
from trainwise.config_checks import accumulation_steps
from trainwise.env import DTYPES, measure_gemm_gflops, pick_device
from trainwise.model_peaks import model_gemm_shapes
from trainwise.numerics.hybrid import resolve_auto_split
from trainwise.rundir import read_json
from trainwise.train.autoac import resolve_ac_mode
from trainwise.train.checkpoint import latest_checkpoint, load_checkpoint
from trainwise.train.data import StepSampler
from trainwise.train.parallel import local_device, setup_distributed
from trainwise.train.precision import get_policy, make_grad_scaler
from trainwise.train.run import prepare_model
from trainwise.train.step import StepParts, lr_at, make_optimizer, sampled_batches, train_step, wait_for_device
from trainwise.workloads.build import build_workload

FAULT_ENV = "TRAINWISE_TIMING_FAULT"


class TimedStep:
    """`step()` runs one training step and returns (its milliseconds, its loss tensor)."""

    def __init__(self, step_fn, workload, tc, device: torch.device):
        self.step, self.workload, self.tc, self.device = step_fn, workload, tc, device

    def gemm_peak(self, dtype_name: str) -> tuple[float | None, int]:
        """Peak GFLOP/s of this model's matmul shapes (one forward + backward of a fresh fp32 copy
        on one micro-batch) run in `dtype_name`, on this process's device and threads."""
        shapes = model_gemm_shapes(self.workload, self.tc.micro_batch_size, self.device)
        return measure_gemm_gflops(shapes, DTYPES[dtype_name], self.device), len(shapes)


def build_trainwise_step(cfg, run_dir: Path | None) -> TimedStep:
    """The trainer's step, set up in the order `train()` sets it up (only the run directory is
    not opened), then restored from `run_dir`'s last checkpoint when it has one."""
    # Over 60 lines on purpose: the trainer's setup in train()'s own order, step for step, so the timed step is the
    # trained one; splitting it would hide that the order matches
    tc = cfg.train
    device = pick_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    policy = get_policy(cfg.precision.policy, device, cfg.precision.allow_tf32)
    dist = setup_distributed(cfg.parallel.strategy, cfg.parallel.backend, device)
    device = local_device(dist, device)
    micro_per_step = accumulation_steps(tc.global_batch_size, tc.micro_batch_size, dist.world_size)
    torch.manual_seed(tc.seed)
    workload = build_workload(cfg)
    summary_path = run_dir / "summary.json" if run_dir else None
    trained = read_json(summary_path) if summary_path and summary_path.is_file() else {}
    # 'auto' AC may have been switched by the trainer's memory measurement: time the mode it ended with
    ac_mode = trained.get("ac") or resolve_ac_mode(cfg, workload, dist.world_size)[0]
    keep_high_precision, _ = resolve_auto_split(cfg, workload, policy)
    prepared = prepare_model(cfg, workload, workload.model, policy, device, dist, ac_mode, keep_high_precision)
    model = prepared.model
    optimizer = make_optimizer(model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2))
    scaler = make_grad_scaler(policy, device, cfg.precision.init_scale)
    sampler = StepSampler(
        len(workload.train), tc.global_batch_size, tc.micro_batch_size, dist.world_size, dist.rank, tc.seed
    )
    ckpt = latest_checkpoint(run_dir / "checkpoints") if run_dir else None
    step = load_checkpoint(ckpt, model, optimizer, scaler)["step"] if ckpt is not None else 0
    batches = sampled_batches(workload.train, sampler)
    parts = StepParts(
        model, optimizer, scaler, batches, workload.loss_fn, policy, device, dist, micro_per_step, tc.grad_clip
    )
    model.train()

    def one_step() -> tuple[float, torch.Tensor]:
        nonlocal step
        for group in optimizer.param_groups:  # outside the timed region, as in the trainer
            group["lr"] = lr_at(step, tc.lr, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
        t0 = time.perf_counter()
        out = train_step(parts, step)
        # the trainer's update (trainwise.train.loop.train); the health check only observes there
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        elif torch.isfinite(out.grad_norm) and torch.isfinite(out.loss):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        wait_for_device(device)
        loss = out.loss
        ms = (time.perf_counter() - t0) * 1e3
        step += 1
        return ms, loss

    return TimedStep(one_step, workload, tc, device)


def build_baseline_step(cfg) -> TimedStep:
    """The plain-PyTorch loop's step on the variants' device (trainwise/bench/baseline.py)."""
    tc = cfg.train
    device = pick_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    wl = build_workload(cfg)
    model = wl.model
    opt = plain_optimizer(model, tc, device)
    batches = PlainBatches(
        wl.train.inputs, wl.train.targets, tc.micro_batch_size, tc.global_batch_size // tc.micro_batch_size, tc.seed
    )
    model.train()

    def one_step() -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        loss = plain_step(
            model, opt, batches.next_step(), tc.grad_clip, device
        )  # the batch fetch is timed, as in plain_train
        return (time.perf_counter() - t0) * 1e3, loss

    return TimedStep(one_step, wl, tc, device)


def serve(timed: TimedStep, label: str, reply, commands) -> None:
    """Answer the parent's commands until it says quit or closes the pipe."""
    for line in commands:
        cmd = json.loads(line)
        if cmd.get("quit"):
            return
        if "warmup" in cmd:
            for _ in range(cmd["warmup"]):
                timed.step()
            reply({"ok": True})
        elif "run" in cmd:
            inject_fault(label)
            reply({"step_ms": [timed.step()[0] for _ in range(cmd["run"])]})
        elif "gemm_peak" in cmd:
            gflops, n = timed.gemm_peak(cmd["gemm_peak"])
            reply({"gemm_gflops": gflops, "gemm_shapes": n})
        else:
            reply({"error": f"unknown command {line.strip()!r}"})


def inject_fault(label: str) -> None:
    for spec in os.environ.get(FAULT_ENV, "").split(";"):
        target, _, kind = spec.rpartition("=")
        if target == label and kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainwise.bench.timing_worker")
    ap.add_argument("variant_dir")
    ap.add_argument("--run-dir", help="the variant's training run directory (its last checkpoint is restored)")
    args = ap.parse_args(argv)
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # from here on, stray prints go to the log, never into a reply

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    variant_dir = Path(args.variant_dir)
    meta = json.loads((variant_dir / "variant.json").read_text())
    try:
        cfg = load_config(variant_dir / "config.toml")
        if meta["kind"] == "baseline":
            timed = build_baseline_step(cfg)
        else:
            timed = build_trainwise_step(cfg, Path(args.run_dir) if args.run_dir else None)
        units = timed.workload.units_per_example * cfg.train.global_batch_size
        reply(
            {
                "ready": True,
                "device": timed.device.type,
                "threads": torch.get_num_threads(),
                "units_per_step": units,
                "throughput_unit": "tokens" if timed.workload.task == "lm" else "samples",
            }
        )
        serve(timed, meta["label"], reply, sys.stdin)
    except (MemoryError, torch.OutOfMemoryError) as e:
        reply({"error": f"out of memory: {e}"})
        return 1
    except Exception as e:  # this variant goes untimed; the parent goes on with the others
        reply({"error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # nothing to clean up: skip the interpreter's teardown of torch (seconds on a busy machine)
