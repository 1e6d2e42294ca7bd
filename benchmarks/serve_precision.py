"""Served precision: test-split accuracy vs fp32 and batch compute time, tabular MLP (CPU).

    python benchmarks/serve_precision.py --d-model 512 --repeats 15

Accuracy through `trainwise.serve.quality.precision_change` (evaluate's predict_split on the test
split); time = one `Runtime.predict` of a 64-instance batch (preprocessing included), the
precisions interleaved A B C A B C ..., median and [min, max].
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads for the timing (1: the machine is oversubscribed)"
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "serve_precision_cpu-2core_20261122.json"))
    args = ap.parse_args()
    import torch

    from benchmarks.serve_loadtest import INSTANCE  # the serving benchmarks' one example row
    from trainwise.config import load_config
    from trainwise.serve.quality import precision_change
    from trainwise.serve.runtime import load_runtime
    from trainwise.train.loop import train

    run_dir = Path(tempfile.mkdtemp(prefix="serve_prec_")) / "tab"
    train(
        load_config(
            None,
            [
                "workload.name=tabular",
                f"model.d_model={args.d_model}",
                f"model.n_layers={args.n_layers}",
                f"train.steps={args.steps}",
                "train.micro_batch_size=64",
                "train.global_batch_size=64",
                "log.progress=false",
            ],
        ),
        run_dir,
    )
    precisions = ["fp32", "bf16", "int8"]
    quality = {p: precision_change(run_dir, p) for p in precisions[1:]}
    runtimes = {p: load_runtime(str(run_dir), p) for p in precisions}
    torch.set_num_threads(args.threads)
    batch = [{**INSTANCE, "age": 20.0 + i} for i in range(64)]
    times = {p: [] for p in precisions}
    for p in precisions:
        runtimes[p].predict(batch)  # warm-up
    for _ in range(args.repeats):
        for p in precisions:
            t = time.perf_counter()
            runtimes[p].predict(batch)
            times[p].append(1000 * (time.perf_counter() - t))
    result = {
        "model": {"d_model": args.d_model, "n_layers": args.n_layers, "steps": args.steps},
        "quality": quality,
        "batch64_ms": {p: {"median": statistics.median(v), "min": min(v), "max": max(v)} for p, v in times.items()},
        "load_average": os.getloadavg()[0],
        "command": "python benchmarks/serve_precision.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    lines = [
        f"# Served precision vs fp32: tabular MLP d_model={args.d_model} x {args.n_layers}, {args.steps} steps",
        "",
        f"Command: `{result['command']}`; 2 shared cores, load average {result['load_average']:.1f}; "
        f"timing with torch.set_num_threads({args.threads}), {args.repeats} interleaved repeats, median [min, max].",
        "",
        "| precision | test accuracy | change vs fp32 | same class as fp32 | max prob diff | ms per 64-instance "
        "batch |",
        "|---|---|---|---|---|---|",
    ]
    fp32_acc = quality["bf16"]["fp32"]["accuracy"]
    lines.append(
        f"| fp32 | {fp32_acc:.4f} | - | - | - | {result['batch64_ms']['fp32']['median']:.2f} "
        f"[{result['batch64_ms']['fp32']['min']:.2f}, {result['batch64_ms']['fp32']['max']:.2f}] |"
    )
    for p in precisions[1:]:
        q, t = quality[p], result["batch64_ms"][p]
        lines.append(
            f"| {p} | {q[p]['accuracy']:.4f} | {q['accuracy_change']:+.4f} | {q['agreement']:.4f} | "
            f"{q['max_prob_diff']:.4f} | {t['median']:.2f} [{t['min']:.2f}, {t['max']:.2f}] |"
        )
    lines += [
        "",
        f"Test split: {quality['bf16']['n']} rows. Same numbers from the CLI: "
        "`trainwise serve RUN_DIR --set serve.precision=int8 --check-precision`.",
    ]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
