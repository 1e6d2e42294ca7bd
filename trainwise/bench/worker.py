"""One bench variant in its own process: `python -m trainwise.bench.worker VARIANT_DIR [--quality]`.

The parent writes VARIANT_DIR/config.toml and variant.json; this process trains the variant
(trainwise's loop into VARIANT_DIR/run/, or the plain-PyTorch baseline), predicts the fixed
validation examples for the quality comparison (with --quality) and writes VARIANT_DIR/run.json.
A crash or an out-of-memory kill leaves no run.json: the parent records the exit status and
stderr instead.

TRAINWISE_BENCH_FAULT="LABEL=crash|oom[;LABEL=...]" makes the variant labelled LABEL die (SIGKILL, as the
kernel's OOM killer does) or raise MemoryError: how the tests show that one failure does not stop
the bench.
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
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from trainwise.bench.baseline import plain_train
from trainwise.bench.prune import is_timed_row
from trainwise.bench.runner import RESULT, RUN
from trainwise.config import load_config
from trainwise.env import pick_device
from trainwise.evaluate.predict import predict_split
from trainwise.rundir import write_json
from trainwise.runstatus import RunStatus
from trainwise.train.data import eval_indices
from trainwise.train.loop import train
from trainwise.train.precision import autocast_context
from trainwise.workloads.base import Split, build_model_from_spec
from trainwise.workloads.build import build_workload

FAULT_ENV = "TRAINWISE_BENCH_FAULT"


def inject_fault(label: str) -> None:
    for spec in os.environ.get(FAULT_ENV, "").split(";"):
        target, _, kind = spec.rpartition("=")
        if target != label:
            continue
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "oom":
            raise MemoryError(f"simulated out-of-memory ({FAULT_ENV}={spec})")


def flops_per_step(workload, tc) -> float:
    """Model FLOPs of one optimizer step (forward + backward, no recomputation): MFU's numerator.

    Counted by torch's FlopCounterMode on two examples through a fresh fp32 copy of the model,
    scaled to the global batch. Its registry has no entry for the CPU flash-attention kernel that
    `F.scaled_dot_product_attention` runs on a CPU, so attention would count zero there; it is
    mapped to torch's own SDPA formulas. For a causal decoder the count is PaLM's model FLOPs
    (Chowdhery et al. 2022, app. B): 6 x matmul weights + 12 x n_layers x d_model x context per
    token (the attention term counts the full T x T scores, the causal mask not subtracted)."""
    model = build_model_from_spec(workload.spec)
    # two examples, scaled: the count is linear in the batch, and a whole micro-batch of a large
    # model costs tens of seconds of CPU per variant (lm-small: 8 x 1024 tokens); two, not one, so
    # that batch-norm layers still train
    x, y = workload.train.batch(torch.arange(min(2, tc.micro_batch_size, len(workload.train))))
    with FlopCounterMode(display=False, custom_mapping=cpu_attention_flops()) as counter:
        workload.loss_fn(model(x), y).backward()
    return float(counter.get_total_flops()) * tc.global_batch_size / len(x)


def cpu_attention_flops() -> dict:
    """FlopCounterMode formulas for the CPU flash-attention kernels. The backward counts twice the
    forward (gradients of the scores, V, Q and K: four T x T x d GEMMs): torch's own backward
    formula adds the flash kernel's recomputation of the scores, which model FLOPs leave out,
    and which the math path (plain bmm, counted by torch) does not run."""
    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return 2 * sdpa_flop_count(query, key, value)

    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def val_subset(workload, tc):
    """The validation examples the trainer validates on (train.eval_batches fixed batches)."""
    idx = torch.cat(eval_indices(len(workload.val), tc.eval_batches, tc.micro_batch_size))
    v = workload.val
    meta = v.meta.iloc[idx.numpy()].reset_index(drop=True) if v.meta is not None else None
    return Split(v.inputs[idx], v.targets[idx], ids=v.ids[idx.numpy()], meta=meta)


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def curves(rows: list[dict]) -> dict:
    return {
        "train": [[r["step"], r["loss"]] for r in rows if "loss" in r and "step_ms" in r],
        "val": [[r["step"], r["val_loss"]] for r in rows if "val_loss" in r],
    }


def run_trainwise(cfg, variant_dir: Path, quality: bool) -> dict:
    run_dir = variant_dir / RUN
    result = train(cfg, run_dir)
    rows = metrics_rows(run_dir)
    out = {
        **result.summary,
        "curves": curves(rows),
        "flops_per_step": flops_per_step(result.workload, cfg.train),
        # every logged timed step (each one with the bench's train.log_every = 1): the spread of the speed, for
        # the recommendation
        "step_ms_samples": [r["step_ms"] for r in rows if is_timed_row(r)],
        "val_examples": len(result.workload.val),
    }
    if quality:
        model, wl = result.model, result.workload
        device = next(model.parameters()).device
        with autocast_context(result.policy, device):
            frame = predict_split(
                model, val_subset(wl, cfg.train), wl.task, wl.info.get("classes"), cfg.eval.batch_size
            )
        frame.to_parquet(variant_dir / "predictions.parquet")
    return out


def run_baseline(cfg, variant_dir: Path, quality: bool) -> dict:
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)  # the same initial weights as the trainer's run
    wl = build_workload(cfg)
    val = [wl.val.batch(i) for i in eval_indices(len(wl.val), tc.eval_batches, tc.micro_batch_size)]
    out = plain_train(
        wl.model, wl.train.inputs, wl.train.targets, val, tc, pick_device(tc.device)
    )  # the variants' device
    units = wl.units_per_example * tc.global_batch_size
    out["tokens_per_s"] = units / (out["median_step_ms"] / 1e3) if out["median_step_ms"] else None
    out["flops_per_step"] = flops_per_step(wl, tc)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainwise.bench.worker")
    ap.add_argument("variant_dir")
    ap.add_argument("--quality", action="store_true", help="save validation predictions for the quality gate")
    args = ap.parse_args(argv)
    variant_dir = Path(args.variant_dir)
    meta = json.loads((variant_dir / "variant.json").read_text())
    cfg = load_config(variant_dir / "config.toml")
    t0 = time.perf_counter()
    try:
        inject_fault(meta["label"])
        run = run_baseline if meta["kind"] == "baseline" else run_trainwise
        out = run(cfg, variant_dir, args.quality)
    except (MemoryError, torch.OutOfMemoryError) as e:
        out = {"status": "oom", "reason": f"out of memory: {e}"}
    except Exception as e:  # any failure of this variant is its result, not the bench's end
        out = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    out["config_hash"] = meta["config_hash"]
    out["process_wall_s"] = time.perf_counter() - t0
    write_json(variant_dir / RESULT, out)
    status = RunStatus.of(out["status"])  # None for the bench's own outcomes (oom, failed)
    return 0 if status is not None and status.finished else 1


if __name__ == "__main__":
    sys.exit(main())
