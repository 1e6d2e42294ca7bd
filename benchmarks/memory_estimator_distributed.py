"""The estimator's DDP / FSDP2 arithmetic against real 2-process runs (gloo, CPU).

`trainwise estimate --world-size 2` traces one process and models what each rank holds under the
strategy (trainwise/train/estimate.py, apply_data_parallel). Here each estimate is compared with a
real `trainwise launch --nproc-per-node 2` run of 3 steps: rank 0's MemTracker measurement of its
second step (summary.json), the same tracker the single-process figures use, now watching real
DDP buckets and FSDP2 all-gathers.

Run: PYTHONPATH=. python benchmarks/memory_estimator_distributed.py
Writes benchmarks/memory_estimator_distributed_cpu-2core_20261122.{json,md}.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.rundir import write_atomic, write_json
from trainwise.train.estimate import estimate_memory
from trainwise.workloads.build import build_workload

OUT = Path(__file__).parent / "memory_estimator_distributed_cpu-2core_20261122"
ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "data.max_corpus_bytes=2000000",
    "train.steps=3",
    "train.eval_every=0",
    "train.eval_batches=1",
    "train.checkpoint_every=0",
    "log.progress=false",
    "log.mlflow=false",
    "train.threads=1",
    "train.micro_batch_size=8",
    "train.global_batch_size=16",
]
PARTS = ("parameters", "gradients", "optimizer_state", "activations", "temporaries", "other")


def measure(overrides: list[str], run_dir: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "trainwise.cli",
        "launch",
        "--nproc-per-node",
        "2",
        "configs/lm-tiny.toml",
        *[a for o in overrides for a in ("--set", o)],
        "--run-dir",
        str(run_dir),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    rows = []
    for strategy, ac in itertools.product(["ddp", "fsdp2"], ["none", "full"]):
        overrides = BASE + [f"parallel.strategy={strategy}", f"memory.ac={ac}"]
        cfg = load_config("configs/lm-tiny.toml", overrides)
        est = estimate_memory(cfg, build_workload(cfg), world_size=2)
        with tempfile.TemporaryDirectory() as d:
            got = measure(overrides, Path(d) / "run")
        rows.append(
            {
                "strategy": strategy,
                "ac": ac,
                "world_size": 2,
                "micro_batch_size": 8,
                "estimated_peak_bytes": est["peak_memory_bytes"],
                "measured_peak_bytes": got["peak_memory_bytes"],
                "relative_error": est["peak_memory_bytes"] / got["peak_memory_bytes"] - 1,
                "estimated_breakdown": est["memory_breakdown"],
                "measured_breakdown": got["memory_breakdown"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    worst = max(abs(r["relative_error"]) for r in rows)
    meta = {
        "workload": "lm-tiny (configs/lm-tiny.toml), 2 gloo processes on CPU",
        "torch": torch.__version__,
        "worst_abs_relative_error": worst,
    }
    write_json(OUT.with_suffix(".json"), {"meta": meta, "rows": rows})
    mib = lambda b: f"{b / 2**20:.2f}"  # noqa: E731
    lines = [
        "# Memory estimator under DDP / FSDP2 vs real 2-process runs (cpu-2core, 2026-11-22)",
        "",
        f"lm-tiny, micro-batch 8 per rank, global batch 16, torch {meta['torch']}. Estimate: `estimate_memory(cfg, "
        "world_size=2)` (one-process fake-tensor trace plus the per-rank model of the strategy). Measured: rank 0's "
        "summary.json of `trainwise launch --nproc-per-node 2` (3 steps, MemTracker on the second). Command: "
        "`PYTHONPATH=. python benchmarks/memory_estimator_distributed.py`.",
        "",
        "| strategy | ac | estimated peak MiB | measured peak MiB | error | "
        + " | ".join(f"{p} est / meas MiB" for p in PARTS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(PARTS),
    ]
    for r in rows:
        e, m = r["estimated_breakdown"], r["measured_breakdown"]
        lines.append(
            f"| {r['strategy']} | {r['ac']} | {mib(r['estimated_peak_bytes'])} | {mib(r['measured_peak_bytes'])} | "
            f"{r['relative_error']:+.1%} | "
            + " | ".join(f"{mib(e.get(p, 0))} / {mib(m.get(p, 0))}" for p in PARTS)
            + " |"
        )
    lines += ["", f"Worst absolute error: {worst:.1%} (the issue's single-process target: 15%).", ""]
    write_atomic(OUT.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
