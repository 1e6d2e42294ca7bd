"""Scale: `trainwise monitor --log` on 1,000,000 and 10,000,000 rows x 20 columns, peak RSS and time.

    .venv/bin/python benchmarks/monitor_scale.py --evidently-python /tmp/evidently-venv/bin/python

A prediction log at 1,000 requests per second (the last 1,000,000 rows drifted: two numeric
columns by 0.5 SD, one categorical reshuffled; benchmarks/monitor_data.py) is generated in a
temporary folder (never committed) and monitored with `--window 1h` against a 1,000,000-row
reference Parquet file, each run a fresh `trainwise monitor` process whose peak RSS is its
ru_maxrss (measured by a wrapper process that runs only it). Targets: peak RSS <= 2 GiB at 10M
rows, time growing no worse than linearly from 1M to 10M. Also recorded: the in-memory path at 1M
(forced by --common-columns) for contrast, whether the streaming and in-memory checks of the same
1M files drift the same columns, and Evidently's DataDriftPreset on the same 1M files (run in its
own virtual environment, see benchmarks/monitor_speed.py) and what happens when it is given the
10M-row log under a memory cap. Writes monitor_scale_<cpu>_<yyyymmdd>.{md,json} next to this file.
Dry run: --rows 100000 (then 100,000 and 1,000,000 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from monitor_data import make_mixed  # noqa: E402

CHUNK_ROWS = 1_000_000
ROWS_PER_S = 1_000
RSS_TARGET_BYTES = 2 * 1024**3


def write_log(folder: Path, n_rows: int) -> Path:
    """`n_rows` log rows at ROWS_PER_S from 2026-11-22T00:00Z, in files of up to CHUNK_ROWS; the last file drifted."""
    folder.mkdir(parents=True)
    chunk = min(CHUNK_ROWS, n_rows)
    n_files = (n_rows + chunk - 1) // chunk
    for i in range(n_files):
        rows = min(chunk, n_rows - i * chunk)
        part = make_mixed(rows, seed=100 + i, drift=i == n_files - 1, as_category=True)
        seconds = (i * chunk + np.arange(rows)) / ROWS_PER_S
        part.insert(0, "timestamp", pd.Timestamp("2026-11-22", tz="UTC") + pd.to_timedelta(seconds, unit="s"))
        part.to_parquet(folder / f"part-{i:04d}.parquet", index=False, row_group_size=131_072)
    return folder


def measured(cmd: list[str]) -> dict:
    """Wall time and peak RSS of one process (run by a fresh wrapper, so ru_maxrss is its own)."""
    wrapper = [sys.executable, __file__, "--child", json.dumps(cmd)]
    proc = subprocess.run(wrapper, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child(cmd: list[str]) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        sys.exit(1)
    print(json.dumps({"wall_s": wall_s, "peak_rss_bytes": peak, "exit_code": proc.returncode}))


def monitor_cmd(log: Path, reference: Path, out: Path, extra: tuple = ()) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from trainwise.cli import main; sys.exit(main(sys.argv[1:]))",
        "monitor",
        "--log",
        str(log),
        "--reference",
        str(reference),
        "--window",
        "1h",
        "--out",
        str(out),
        *extra,
    ]


def drifted(out: Path) -> list[str]:
    result = json.loads((out / "drift.json").read_text())
    names = [c["name"] for c in result["columns"] if c["drift"]]
    return names + (["(multivariate)"] if (result.get("multivariate") or {}).get("drift") else [])


def same_decisions(reference: Path, current: Path) -> dict:
    """The 1M files checked in memory and from profiles in this process: the same drifted columns?"""
    from trainwise.monitor import sketch
    from trainwise.monitor.check import reference_profile
    from trainwise.monitor.drift import DriftMonitor

    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    a = DriftMonitor().fit(ref).check(cur)
    monitor = DriftMonitor()
    monitor.fit_profile(reference_profile(str(reference), monitor._tested, "label"))
    b = monitor.check_profile(sketch.profile_partition(cur[list(monitor.layout_)], monitor.layout_))
    within = all(
        y["statistic"] - 1e-12 <= x["statistic"] <= y["statistic"] + y["statistic_bound"] + 1e-12
        and abs(x["effect_size"] - y["effect_size"]) <= y["effect_size_bound"] + 1e-9
        for x, y in zip(a["columns"], b["columns"], strict=True)
        if x["type"] == "numeric"
    )
    return {
        "in_memory_drifted": [c["name"] for c in a["columns"] if c["drift"]],
        "streaming_drifted": [c["name"] for c in b["columns"] if c["drift"]],
        "same_dataset_drift": a["dataset_drift"] == b["dataset_drift"],
        "same_columns": [c["drift"] for c in a["columns"]] == [c["drift"] for c in b["columns"]],
        "numeric_statistics_within_bounds": within,
        "max_ks_difference": max(
            abs(x["statistic"] - y["statistic"])
            for x, y in zip(a["columns"], b["columns"], strict=True)
            if x["type"] == "numeric"
        ),
        "max_ks_bound": max(y["statistic_bound"] for y in b["columns"] if y["type"] == "numeric"),
    }


def evidently(python: str, reference: Path, current: Path, timeout_s: int, limit_gib: float | None = None) -> dict:
    cmd = [python, str(HERE / "evidently_datadrift.py"), str(reference), str(current), "1"]
    if limit_gib:  # address-space cap: the 2-core machine's memory is shared with other work
        cap = int(limit_gib * 1024**3)
        cmd = ["prlimit", f"--as={cap}", *cmd]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s} s", "wall_s": time.perf_counter() - t0}
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        return {"error": last, "exit_code": proc.returncode, "wall_s": time.perf_counter() - t0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "load_average_1_5_15_min": list(os.getloadavg())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000, help="the small size; the large one is 10x")
    ap.add_argument("--evidently-python", default="")
    ap.add_argument("--evidently-timeout-s", type=int, default=900)
    ap.add_argument("--evidently-large-limit-gib", type=float, default=8.0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    tag = f"cpu-{os.cpu_count()}core_{date.today():%Y%m%d}"
    out_base = Path(args.out) if args.out else HERE / f"monitor_scale_{tag}"
    result = {"machine_before": machine(), "rows_per_s": ROWS_PER_S, "columns": 20, "window": "1h", "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference, current = tmp / "reference.parquet", tmp / "current.parquet"
        make_mixed(args.rows, seed=1, as_category=True).to_parquet(reference)
        make_mixed(args.rows, seed=2, drift=True, as_category=True).to_parquet(current)
        result["decisions_1x"] = same_decisions(reference, current)
        print("same decisions:", json.dumps(result["decisions_1x"]), flush=True)
        for label, n_rows in (("1x", args.rows), ("10x", 10 * args.rows)):
            log = write_log(tmp / f"log-{label}", n_rows)
            out = tmp / f"out-{label}"
            run = {"rows": n_rows, **measured(monitor_cmd(log, reference, out))}
            if "error" not in run:
                run["drifted_last_window"] = drifted(out)
                run["windows"] = len(json.loads((out / "drift.json").read_text())["windows"])
            result["runs"][f"streaming_{label}"] = run
            print(label, json.dumps(run), flush=True)
            if label == "1x":
                mem = {"rows": n_rows, **measured(monitor_cmd(log, reference, tmp / "out-mem", ("--common-columns",)))}
                if "error" not in mem:
                    mem["drifted_last_window"] = drifted(tmp / "out-mem")
                result["runs"]["in_memory_1x"] = mem
                print("in memory", json.dumps(mem), flush=True)
            else:
                large_log = log
        if args.evidently_python:
            result["evidently_1x"] = evidently(args.evidently_python, reference, current, args.evidently_timeout_s)
            print("evidently 1x", json.dumps(result["evidently_1x"]), flush=True)
            result["evidently_10x"] = evidently(
                args.evidently_python, reference, large_log, args.evidently_timeout_s, args.evidently_large_limit_gib
            )
            result["evidently_10x"]["memory_cap_gib"] = args.evidently_large_limit_gib
            print("evidently 10x", json.dumps(result["evidently_10x"]), flush=True)
    result["machine_after"] = machine()
    small, large = result["runs"]["streaming_1x"], result["runs"]["streaming_10x"]
    if "wall_s" in small and "wall_s" in large:
        result["time_ratio_10x_over_1x"] = large["wall_s"] / small["wall_s"]
        result["no_worse_than_linear"] = result["time_ratio_10x_over_1x"] <= 10.0
        result["peak_rss_10x_within_2gib"] = large["peak_rss_bytes"] <= RSS_TARGET_BYTES
    out_base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out_base.with_suffix(".md").write_text(markdown(result) + "\n")
    print(f"wrote {out_base}.json and .md")


def markdown(r: dict) -> str:
    gib = 1024**3
    rows = []
    for name, run in r["runs"].items():
        if "error" in run:
            rows.append(f"| {name} | {run['rows']:,} | failed: {run['error'][-200:]!r} | | |")
        else:
            rows.append(
                f"| {name} | {run['rows']:,} | {run['wall_s']:.1f} | {run['peak_rss_bytes'] / gib:.2f} | "
                f"{', '.join(run.get('drifted_last_window', []))} |"
            )
    d = r["decisions_1x"]
    lines = [
        "# Monitor at scale: streaming profiles of the prediction log",
        "",
        f"Machine: {r['machine_before']['cpu_model']}, {r['machine_before']['cpu_count']} cores; load average "
        f"(1/5/15 min) before {r['machine_before']['load_average_1_5_15_min']}, after "
        f"{r['machine_after']['load_average_1_5_15_min']}. Command: `python benchmarks/monitor_scale.py`.",
        "",
        f"A log of 20 columns at {r['rows_per_s']:,} rows/s, `trainwise monitor --log DIR --reference REF.parquet "
        "--window 1h --out OUT` as its own process; the last file's rows (at most 1,000,000) drifted. "
        "in_memory_1x: the same command with --common-columns, which reads the rows into memory.",
        "",
        "| run | rows | wall s | peak RSS GiB | drifted in the last window |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Time 10x / 1x: {r.get('time_ratio_10x_over_1x', float('nan')):.2f} (no worse than linear: "
        f"{r.get('no_worse_than_linear')}); peak RSS at 10x within 2 GiB: {r.get('peak_rss_10x_within_2gib')}.",
        "",
        f"Same decisions on the {r['runs']['streaming_1x']['rows']:,}-row files, in memory vs from profiles: "
        f"columns {d['same_columns']}, dataset verdict {d['same_dataset_drift']}, numeric statistics within "
        f"their binning bounds {d['numeric_statistics_within_bounds']} (largest KS difference "
        f"{d['max_ks_difference']:.2e}, largest bound {d['max_ks_bound']:.2e}); drifted in memory: "
        f"{', '.join(d['in_memory_drifted'])}; from profiles: {', '.join(d['streaming_drifted'])}.",
    ]
    if "evidently_1x" in r:
        e1, e10 = r["evidently_1x"], r["evidently_10x"]
        first = f"{e1['seconds'][0]:.1f} s" if "seconds" in e1 else f"failed: {e1['error']}"
        large = (
            f"{e10['seconds'][0]:.1f} s"
            if "seconds" in e10
            else f"failed after {e10.get('wall_s', 0):.0f} s: {e10['error']}"
        )
        lines += [
            "",
            f"Evidently DataDriftPreset (Report.run on pandas frames already read), same run: 1x files {first}; "
            f"the 10x log folder (read whole by pandas, the reference's columns kept) under a "
            f"{e10['memory_cap_gib']} GiB address-space cap (prlimit --as): {large}.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
