"""Power: detection rate and delay on drift streams with known drift points, and a real covariate shift.

    /work/main/.venv/bin/python benchmarks/monitor_power.py

1. Synthetic streams (generator: benchmarks/monitor_data.make_mixed, 10 numeric + 10 categorical
   columns; river was not used, its generators change labels rather than inputs). Each stream is
   `--stream-windows` windows; drift starts at the middle window. Scenarios: abrupt mean shift of
   one column by 0.1 / 0.2 / 0.5 SD, a gradual shift ramping to 0.5 SD over half the post-drift windows, a variance
   change (x1.3), a categorical share change, and a change of the joint distribution only (one
   uniform column becomes a function of another, both marginals unchanged).
   Reported per scenario and window size: false-alarm rate before the drift point, detection rate
   after it (after the ramp for the gradual case), median delay in windows to the first alarm,
   and how often the drifted column is the one flagged.
2. Fair (statsmodels), the tabular workload's table: the reference is a random half of the rows with
   education "high school" or "some college"; windows mix the other half with rows of
   college-educated women (college graduate, some graduate school, advanced degree) at shares
   0 (the no-drift control), 0.25, 0.5 and 1. The education column itself is not monitored, so
   the shift must be seen through the columns that move with education (age, occupation, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_data import _zipf_shares, make_mixed  # noqa: E402

from trainwise.monitor.drift import DriftMonitor  # noqa: E402


def _shift(frame, col, sd_amount, ref_sd):
    frame[col] = frame[col] + sd_amount * ref_sd[col]


def apply_scenario(frame: pd.DataFrame, scenario: str, progress: float, ref_sd: dict, rng) -> str:
    """Change `frame` for a window `progress` (0..1) of the way into the drift; returns the drifted column."""
    if scenario.startswith("mean_"):
        _shift(frame, "num_normal", float(scenario.split("_")[1]), ref_sd)
        return "num_normal"
    if scenario == "gradual_0.5":
        _shift(frame, "num_normal", 0.5 * progress, ref_sd)
        return "num_normal"
    if scenario == "variance_1.3":
        frame["num_student_t"] = frame["num_student_t"] * 1.3
        return "num_student_t"
    if scenario == "categorical_shares":
        shares = 0.8 * _zipf_shares(5) + 0.2 * _zipf_shares(5)[::-1]
        frame["cat_5"] = np.array([f"c5_{i}" for i in range(5)])[rng.choice(5, len(frame), p=shares / shares.sum())]
        return "cat_5"
    if scenario == "joint_only":
        # num_uniform := Phi(standardised num_normal): still Uniform(0, 1), now tied to num_normal.
        frame["num_uniform"] = norm.cdf((frame["num_normal"] - 50.0) / 10.0)
        return "(multivariate)"
    raise ValueError(scenario)


def run_stream(monitor, scenario, window_rows, n_windows, seed, ref_sd) -> dict:
    start = n_windows // 2
    ramp_windows = max(2, (n_windows - start) // 2)  # the gradual drift reaches full size half-way through
    flags, attributed = [], []
    rng = np.random.default_rng(seed)
    for w in range(n_windows):
        frame = make_mixed(window_rows, seed=seed * 1000 + w)
        col = None
        if w >= start:
            progress = min(1.0, (w - start + 1) / ramp_windows)
            col = apply_scenario(frame, scenario, progress, ref_sd, rng)
        r = monitor.check(frame)
        flags.append(bool(r["dataset_drift"]))
        if col and r["dataset_drift"]:
            names = [c["name"] for c in r["columns"] if c["drift"]] + (
                ["(multivariate)"] if r["multivariate"]["drift"] else []
            )
            attributed.append(col in names)
    judged_from = start + (ramp_windows if scenario.startswith("gradual") else 0)
    first = next((w for w in range(start, n_windows) if flags[w]), None)
    return {
        "pre": flags[:start],
        "post": flags[judged_from:],
        "delay": None if first is None else first - start,
        "attributed": attributed,
    }


def synthetic(args) -> list[dict]:
    reference = make_mixed(args.reference_rows, seed=1)
    ref_sd = {c: float(reference[c].std()) for c in reference.columns if c.startswith("num_")}
    monitor = DriftMonitor().fit(reference)
    out = []
    for window_rows in [int(s) for s in args.window_rows.split(",")]:
        for scenario in args.scenarios.split(","):
            t0 = time.perf_counter()
            streams = [
                run_stream(monitor, scenario, window_rows, args.stream_windows, 100 + s, ref_sd)
                for s in range(args.streams)
            ]
            delays = [s["delay"] for s in streams if s["delay"] is not None]
            attributed = sum((s["attributed"] for s in streams), [])
            row = {
                "scenario": scenario,
                "window_rows": window_rows,
                "streams": args.streams,
                "windows_per_stream": args.stream_windows,
                "false_alarm_rate_before_drift": float(np.mean(sum((s["pre"] for s in streams), []))),
                "detection_rate_after_drift": float(np.mean(sum((s["post"] for s in streams), []))),
                "streams_detected": len(delays),
                "median_delay_windows": float(np.median(delays)) if delays else None,
                "max_delay_windows": max(delays) if delays else None,
                "drifted_column_flagged_share": float(np.mean(attributed)) if attributed else None,
                "wall_s": time.perf_counter() - t0,
            }
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def fair(args) -> list[dict]:
    from trainwise.workloads.tabular import load_fair

    frame = load_fair().drop(columns=["had_affair"])
    rng = np.random.default_rng(0)
    base = frame[frame["education"].isin(["high school", "some college"])]
    other = frame[frame["education"].isin(["college graduate", "some graduate school", "advanced degree"])]
    order = rng.permutation(len(base))
    reference = base.iloc[order[: len(base) // 2]].drop(columns=["education"])
    pool_same = base.iloc[order[len(base) // 2 :]].drop(columns=["education"])
    pool_other = other.drop(columns=["education"])
    monitor = DriftMonitor().fit(reference)
    out = []
    for window_rows in (100, 300, 1000):
        for share in (0.0, 0.25, 0.5, 1.0):
            flags, flagged = [], {}
            for _ in range(args.fair_windows):
                n_other = int(round(share * window_rows))
                window = pd.concat(
                    [
                        pool_same.sample(window_rows - n_other, random_state=rng.integers(1 << 31)),
                        pool_other.sample(n_other, random_state=rng.integers(1 << 31)),
                    ]
                )
                r = monitor.check(window)
                flags.append(bool(r["dataset_drift"]))
                for c in r["columns"] + [r["multivariate"]]:
                    if c["drift"]:
                        flagged[c["name"]] = flagged.get(c["name"], 0) + 1
            row = {
                "window_rows": window_rows,
                "share_college_educated": share,
                "windows": args.fair_windows,
                "alarm_rate": float(np.mean(flags)),
                "columns_flagged_count": dict(sorted(flagged.items(), key=lambda kv: -kv[1])),
            }
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window-rows", default="1000,10000")
    ap.add_argument(
        "--scenarios", default="mean_0.1,mean_0.2,mean_0.5,gradual_0.5,variance_1.3,categorical_shares,joint_only"
    )
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--stream-windows", type=int, default=30)
    ap.add_argument("--reference-rows", type=int, default=100_000)
    ap.add_argument("--fair-windows", type=int, default=50)
    ap.add_argument("--out", default=str(Path(__file__).parent / "monitor_power_cpu-2core_20261122"))
    args = ap.parse_args()
    result = {"config": vars(args), "fair": fair(args), "synthetic": synthetic(args)}
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
