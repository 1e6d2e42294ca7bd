"""Is a variant's step time inside `trainwise bench` the same as the same config run alone?

Interleaves, ROUNDS times: (A) `trainwise train CONFIG` in a fresh process, (B) `trainwise bench`
of the same config with a one-variant grid (the fp32 control, no baseline row) into a fresh folder.
Reports each side's median step time (median over rounds of each run's median) with min-max, and
the ratio B / A from the same session. Target: within 3%.

    python benchmarks/bench_overhead.py [ROUNDS]     # writes benchmarks/bench_overhead_cpu-2core_<date>.{md,json}
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/lm-tiny.toml"
# log_every=1 on both sides: the bench logs every step (for pruning), so the config run alone does too
SETS = [
    "train.steps=20",
    "train.eval_every=0",
    "train.eval_batches=2",
    "train.checkpoint_every=0",
    "train.threads=2",
    "train.log_every=1",
    "log.progress=false",
]


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "trainwise.cli", *args], cwd=ROOT, check=True, capture_output=True, text=True)


def alone(tmp: Path, i: int) -> float:
    run = tmp / f"alone-{i}"
    cli("train", CONFIG, *sum((["--set", s] for s in SETS), []), "--run-dir", str(run))
    return json.loads((run / "summary.json").read_text())["median_step_ms"]


def in_bench(tmp: Path, i: int) -> float:
    out = tmp / f"bench-{i}"
    cli(
        "bench",
        CONFIG,
        "--grid",
        "precision.policy=fp32",
        *sum(
            (["--set", s] for s in SETS + ["bench.baseline=false", "bench.control_seeds=1", "bench.timing_rounds=0"]),
            [],
        ),
        "--out",
        str(out),
    )
    return json.loads((out / "results.json").read_text())[0][
        "train_median_step_ms"
    ]  # the training run's own steps, not the timing phase's


def main(rounds: int = 5) -> None:
    a, b = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for i in range(rounds):  # A B A B ...: drifts of the shared machine hit both sides alike
            a.append(alone(tmp, i))
            b.append(in_bench(tmp, i))
            print(f"round {i + 1}: alone {a[-1]:.1f} ms, in bench {b[-1]:.1f} ms", flush=True)
    ratio = median(b) / median(a)
    paired = median(y / x for x, y in zip(a, b, strict=True))
    result = {
        "config": CONFIG,
        "overrides": SETS,
        "rounds": rounds,
        "alone_step_ms": a,
        "bench_step_ms": b,
        "alone_median_step_ms": median(a),
        "bench_median_step_ms": median(b),
        "ratio_bench_over_alone": ratio,
        "median_paired_ratio": paired,
        "target": "within 3%",
        "date": time.strftime("%Y-%m-%d"),
    }
    stem = ROOT / "benchmarks" / f"bench_overhead_cpu-2core_{time.strftime('%Y%m%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(
        "# Step time inside `trainwise bench` vs the same config run alone\n\n`python benchmarks/bench_overhead.py "
        f"{rounds}`: {CONFIG} with {' '.join(SETS)}, {rounds} interleaved rounds (A = `trainwise train`, B = "
        "`trainwise bench --grid precision.policy=fp32`), shared 2-core CPU.\n\n| | median step ms | min | max "
        f"|\n|---|---|---|---|\n| alone | {median(a):.1f} | {min(a):.1f} | {max(a):.1f} |\n| in bench | "
        f"{median(b):.1f} | {min(b):.1f} | {max(b):.1f} |\n\nratio of medians (bench / alone): **{ratio:.3f}** "
        f"({ratio - 1:+.1%}); median of the paired per-round ratios: {paired:.3f} ({paired - 1:+.1%}). Target: within "
        "3%.\n"
    )
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
