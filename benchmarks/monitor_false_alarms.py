"""False alarms: windows drawn from the reference distribution itself must rarely raise drift.

    /work/main/.venv/bin/python benchmarks/monitor_false_alarms.py

The reference is one sample of benchmarks/monitor_data.make_mixed (10 numeric + 10 categorical
columns); every window is a fresh sample of the same generator (a new seed), so any dataset-level
alarm is a false alarm. For each window size the script reports trainwise's dataset-level alarm
rate (with a Wilson 95% interval), the per-column alarm rate, and for comparison the alarm rate of
the naive rule "any column with an uncorrected p < 0.05" (what a monitor without multiple-testing
correction or effect-size gate does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from statsmodels.stats.proportion import proportion_confint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_data import make_mixed  # noqa: E402

from trainwise.monitor.drift import DriftMonitor  # noqa: E402


def run_size(
    monitor: DriftMonitor, window_rows: int, n_windows: int, n_numeric: int, n_categorical: int, as_category: bool
) -> dict:
    alarms, naive, column_alarms, gated, seconds = 0, 0, 0, 0, []
    n_columns = 0
    for w in range(n_windows):
        window = make_mixed(
            window_rows, seed=10_000 + w, n_numeric=n_numeric, n_categorical=n_categorical, as_category=as_category
        )
        t0 = time.perf_counter()
        r = monitor.check(window)
        seconds.append(time.perf_counter() - t0)
        family = [c for c in r["columns"] if c.get("status") == "ok"] + (
            [r["multivariate"]] if r["multivariate"] else []
        )
        n_columns = len(family)
        alarms += bool(r["dataset_drift"])
        naive += any(c["p_value"] < 0.05 for c in family)
        column_alarms += sum(c["drift"] for c in family)
        gated += sum(c["significant"] and not c["effect_passes"] for c in family)
        if (w + 1) % 20 == 0:
            print(f"  {window_rows} rows: {w + 1} windows, {alarms} dataset alarms", flush=True)
    lo, hi = proportion_confint(alarms, n_windows, method="wilson")
    return {
        "window_rows": window_rows,
        "windows": n_windows,
        "tests_per_window": n_columns,
        "dataset_alarm_rate": alarms / n_windows,
        "dataset_alarm_rate_ci95": [lo, hi],
        "column_alarm_rate": column_alarms / (n_windows * n_columns),
        "significant_but_below_effect_threshold_per_window": gated / n_windows,
        "naive_uncorrected_alarm_rate": naive / n_windows,
        "check_seconds_median": float(np.median(seconds)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,10000,1000000")
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--reference-rows", type=int, default=1_000_000)
    ap.add_argument("--numeric", type=int, default=10)
    ap.add_argument("--categorical", type=int, default=10)
    ap.add_argument(
        "--as-category", action="store_true", help="categorical columns as pandas category dtype (faster to generate)"
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "monitor_false_alarms_cpu-2core_20261122"))
    args = ap.parse_args()
    reference = make_mixed(
        args.reference_rows,
        seed=1,
        n_numeric=args.numeric,
        n_categorical=args.categorical,
        as_category=args.as_category,
    )
    monitor = DriftMonitor().fit(reference)
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        results.append(run_size(monitor, size, args.windows, args.numeric, args.categorical, args.as_category))
        results[-1]["wall_s"] = time.perf_counter() - t0
        print(json.dumps(results[-1]), flush=True)
        out = {
            "reference_rows": args.reference_rows,
            "numeric_columns": args.numeric,
            "categorical_columns": args.categorical,
            "categorical_as_category_dtype": args.as_category,
            "alpha": monitor.alpha,
            "results": results,
        }
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
