"""Estimator accuracy: `trainwise estimate` against the trainer's own measurement, on lm-tiny.

For every combination of precision {fp32, bf16-mixed} x AC {none, full, selective} x micro-batch
{8, 32}: the estimate (fake-tensor trace, no data touched by the model) and a real 3-step training
run through `train()`, whose summary.json carries the measured peak of its second step.
Target: |estimate / measured - 1| <= 15% everywhere.

Run: PYTHONPATH=. python benchmarks/memory_estimator.py
Writes benchmarks/memory_estimator_cpu-2core_20261122.{json,md}.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.rundir import write_atomic, write_json
from trainwise.train.estimate import estimate_memory
from trainwise.train.loop import train
from trainwise.workloads.build import build_workload

OUT = Path(__file__).parent / "memory_estimator_cpu-2core_20261122"
BASE = [
    "data.max_corpus_bytes=2000000",
    "train.steps=3",
    "train.eval_every=0",
    "train.eval_batches=1",
    "train.checkpoint_every=0",
    "log.progress=false",
]


def main() -> None:
    rows = []
    for policy, ac, mb in itertools.product(["fp32", "bf16-mixed"], ["none", "full", "selective"], [8, 32]):
        cfg = load_config(
            "configs/lm-tiny.toml",
            BASE
            + [
                f"precision.policy={policy}",
                f"memory.ac={ac}",
                f"train.micro_batch_size={mb}",
                f"train.global_batch_size={mb}",
            ],
        )
        est = estimate_memory(cfg, build_workload(cfg))
        with tempfile.TemporaryDirectory() as d:
            measured = train(cfg, Path(d) / "run").summary
        rows.append(
            {
                "precision": policy,
                "ac": ac,
                "micro_batch_size": mb,
                "estimated_peak_bytes": est["peak_memory_bytes"],
                "measured_peak_bytes": measured["peak_memory_bytes"],
                "estimated_activation_bytes": est["peak_activation_bytes"],
                "measured_activation_bytes": measured["peak_activation_bytes"],
                "relative_error": est["peak_memory_bytes"] / measured["peak_memory_bytes"] - 1,
            }
        )
        print(rows[-1], flush=True)
    worst = max(abs(r["relative_error"]) for r in rows)
    meta = {"workload": "lm-tiny (configs/lm-tiny.toml)", "torch": torch.__version__, "worst_abs_relative_error": worst}
    write_json(OUT.with_suffix(".json"), {"meta": meta, "rows": rows})
    lines = [
        "# Memory estimator vs measurement (cpu-2core, 2026-11-22)",
        "",
        f"lm-tiny, torch {meta['torch']}. Estimate: `trainwise estimate` (fake-tensor trace). Measured: the trainer's "
        "summary.json of a 3-step run (MemTracker on the second step). Command: `PYTHONPATH=. python "
        "benchmarks/memory_estimator.py`.",
        "",
        "| precision | ac | micro-batch | estimated peak MiB | measured peak MiB | error | est. activations MiB | "
        "measured activations MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['ac']} | {r['micro_batch_size']} | {r['estimated_peak_bytes'] / 2**20:.2f} | "
            f"{r['measured_peak_bytes'] / 2**20:.2f} | {r['relative_error']:+.2%} | "
            f"{r['estimated_activation_bytes'] / 2**20:.2f} | {r['measured_activation_bytes'] / 2**20:.2f} |"
        )
    lines += ["", f"Worst absolute error: {worst:.2%} (target: 15%).", ""]
    write_atomic(OUT.with_suffix(".md"), "\n".join(lines))


if __name__ == "__main__":
    main()
