"""Speed: the full per-column drift report on 1,000,000 x 20 mixed columns, against Evidently.

    /work/main/.venv/bin/python benchmarks/monitor_speed.py --evidently-python /tmp/evidently-venv/bin/python

Evidently runs in its own virtual environment (never a trainwise dependency):
    python3 -m venv /tmp/evidently-venv && /tmp/evidently-venv/bin/pip install evidently "pandas<3" pyarrow
(evidently 0.7.23 does not import under pandas 3). Both tools read the same Parquet files in the
same run; each timing repeats `--repeats` times and the median and min/max are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_data import make_mixed  # noqa: E402

from trainwise.monitor.drift import DriftMonitor  # noqa: E402
from trainwise.monitor.report import write_outputs  # noqa: E402


def time_trainwise(ref_path: Path, cur_path: Path, out_dir: Path) -> dict:
    """Seconds for each stage of one full report (reading, fit, check, drift.json + report.html)."""
    t = {}
    t0 = time.perf_counter()
    reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    t["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    monitor = DriftMonitor().fit(reference)
    t["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = monitor.check(current)
    t["check_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_outputs(result, out_dir)
    t["write_s"] = time.perf_counter() - t0
    t["total_s"] = sum(t.values())
    t["drifted"] = [c["name"] for c in result["columns"] if c["drift"]] + (
        ["(multivariate)"] if result["multivariate"]["drift"] else []
    )
    return t


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--evidently-python", default="")
    ap.add_argument("--evidently-repeats", type=int, default=1)
    ap.add_argument("--evidently-timeout-s", type=int, default=1200)
    ap.add_argument("--out", default=str(Path(__file__).parent / "monitor_speed_cpu-2core_20261122"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ref_path, cur_path = tmp / "reference.parquet", tmp / "current.parquet"
        make_mixed(args.rows, seed=1).to_parquet(ref_path)
        make_mixed(args.rows, seed=2, drift=True).to_parquet(cur_path)
        runs = [time_trainwise(ref_path, cur_path, tmp / f"out{i}") for i in range(args.repeats)]
        trainwise = {k: summarise([r[k] for r in runs]) for k in ("read_s", "fit_s", "check_s", "write_s", "total_s")}
        trainwise["drifted"] = runs[0]["drifted"]
        evidently = None
        if args.evidently_python:
            cmd = [
                args.evidently_python,
                str(Path(__file__).parent / "evidently_datadrift.py"),
                str(ref_path),
                str(cur_path),
                str(args.evidently_repeats),
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.evidently_timeout_s)
                evidently = (
                    json.loads(proc.stdout.strip().splitlines()[-1])
                    if proc.returncode == 0
                    else {"error": proc.stderr[-2000:]}
                )
            except subprocess.TimeoutExpired:
                evidently = {"error": f"did not finish within {args.evidently_timeout_s} s"}
    result = {
        "rows": args.rows,
        "columns": 20,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min_at_end": os.getloadavg(),
        "trainwise": trainwise,
        "evidently": evidently,
    }
    if evidently and "seconds" in evidently:
        ev_median = statistics.median(evidently["seconds"])
        # Evidently's Report.run does no file reading; compare with trainwise's fit + check + write.
        result["ratio_evidently_over_trainwise"] = ev_median / trainwise["total_s"]["median"]
        result["ratio_evidently_over_trainwise_without_read"] = ev_median / statistics.median(
            [r["fit_s"] + r["check_s"] + r["write_s"] for r in runs]
        )
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
