"""Distributed figures on CPU with gloo (issue 4), written to distributed_cpu-2core_<date>.{md,json}.

1. Parity: lm-tiny in fp32, global batch 16, 50 steps, loss logged every step: one process
   (micro-batch 16) vs 2 processes (micro-batch 8 each) under DDP and under FSDP2, all started
   through the CLI (`trainwise train` / `trainwise launch`). Figure: the largest relative
   difference of the per-step training loss from the one-process run.
2. Per-rank memory at 2 ranks, DDP vs FSDP2: bytes of parameters + gradients + AdamW state each
   rank really holds after one step (local shards summed; distributed_memory_worker.py), and
   MemTracker's breakdown of step 2 from the parity runs' summary.json (rank 0).

Usage: python benchmarks/distributed_cpu.py [--steps 50] [--out benchmarks]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "precision.policy=fp32",
    "train.log_every=1",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "log.progress=false",
    "train.threads=1",
    "train.global_batch_size=16",
]


def cli(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "trainwise.cli", *args], cwd=ROOT, check=True, capture_output=True)


def train_run(strategy: str, steps: int, run_dir: Path) -> dict:
    sets = [
        *BASE,
        f"train.steps={steps}",
        f"parallel.strategy={strategy}",
        f"train.micro_batch_size={16 if strategy == 'single' else 8}",
    ]
    args = [a for s in sets for a in ("--set", s)] + ["--run-dir", str(run_dir)]
    t0 = time.perf_counter()
    cli(
        ["train", "configs/lm-tiny.toml", *args]
        if strategy == "single"
        else ["launch", "--nproc-per-node", "2", "configs/lm-tiny.toml", *args]
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "losses": [r["loss"] for r in rows],
        "wall_s": time.perf_counter() - t0,
        "median_step_ms": summary["median_step_ms"],
        "memory_breakdown_rank0": summary.get("memory_breakdown"),
    }


def memory_run(strategy: str, tmp: Path) -> list[dict]:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--standalone",
            "benchmarks/distributed_memory_worker.py",
            strategy,
            str(tmp),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # a script's own folder is on sys.path, not the repository
    return [json.loads((tmp / f"{strategy}_rank{r}.json").read_text()) for r in range(2)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default="benchmarks")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="twdist"))
    runs = {s: train_run(s, args.steps, tmp / s) for s in ("single", "ddp", "fsdp2")}
    ref = runs["single"]["losses"]
    parity = {}
    for s in ("ddp", "fsdp2"):
        rel = [abs(a - b) / abs(b) for a, b in zip(runs[s]["losses"], ref, strict=True)]
        parity[s] = {
            "steps": len(rel),
            "max_rel_diff": max(rel),
            "median_rel_diff": sorted(rel)[len(rel) // 2],
            "within_1e-5": max(rel) <= 1e-5,
        }
    memory = {s: memory_run(s, tmp) for s in ("ddp", "fsdp2")}
    ratio = [memory["fsdp2"][r]["total_bytes"] / memory["ddp"][r]["total_bytes"] for r in range(2)]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "hardware": "cpu, 2 cores shared (gloo)",
        "workload": "lm-tiny fp32, global batch 16",
        "parity": parity,
        "runs": runs,
        "memory_per_rank": memory,
        "fsdp2_over_ddp_bytes_per_rank": ratio,
    }
    stem = Path(args.out) / f"distributed_cpu-2core_{time.strftime('%Y%m%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Distributed on CPU (gloo, 2 shared cores), {result['date']}",
        "",
        "Command: `python benchmarks/distributed_cpu.py --steps %d`" % args.steps,
        "",
        f"## Loss parity, lm-tiny fp32, global batch 16, {args.steps} steps (1 process, micro 16) vs 2 processes "
        "(micro 8)",
        "",
        "| strategy | steps | max relative loss difference | median | within 1e-5 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s} x2 | {p['steps']} | {p['max_rel_diff']:.2e} | {p['median_rel_diff']:.2e} | {p['within_1e-5']} |"
        for s, p in parity.items()
    ]
    lines += [
        "",
        "## Per-rank bytes after one step, 2 ranks (local storage summed: parameters, gradients, AdamW state)",
        "",
        "| strategy | rank | parameters | gradients | optimizer state | total |",
        "|---|---|---|---|---|---|",
    ]
    for s, rows in memory.items():
        lines += [
            f"| {s} | {r['rank']} | {r['parameter_bytes']:,} | {r['gradient_bytes']:,} | "
            f"{r['optimizer_state_bytes']:,} | {r['total_bytes']:,} |"
            for r in rows
        ]
    lines += [
        "",
        f"FSDP2 / DDP total bytes per rank: rank 0 {ratio[0]:.3f}, rank 1 {ratio[1]:.3f} (ideal 0.5: parameters are "
        "sharded on dim 0,",
        "so uneven first dimensions leave one rank slightly more).",
        "",
        "MemTracker breakdown of training step 2 on rank 0 (summary.json memory_breakdown, bytes):",
        "",
    ]
    lines += [f"- {s}: {runs[s]['memory_breakdown_rank0']}" for s in ("single", "ddp", "fsdp2")]
    lines += [
        "",
        "MemTracker's peak counts FSDP2's gathered (unsharded) parameters of the blocks in flight as parameters, "
        "hence more than the local shard; gradients read 0 where the peak falls before backward.",
    ]
    lines += ["", "No GPU in this task: no throughput figures for lm-small per strategy."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
