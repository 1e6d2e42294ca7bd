"""Time Evidently's DataDriftPreset on two Parquet files; run with Evidently's own interpreter.

Evidently is not a trainwise dependency: benchmarks/monitor_speed.py runs this script with the
Python of a separate virtual environment (see that script), and reads the JSON it prints.
usage: python evidently_datadrift.py REF.parquet CUR.parquet N_REPEATS
"""

import json
import sys
import time

import pandas as pd


def main() -> None:
    ref_path, cur_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    # the reference's columns only: a log's metadata (timestamp) is not data to test, as in trainwise
    current = current[[c for c in reference.columns if c in current.columns]]
    times, drifted = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
        result = snapshot.dict()
        times.append(time.perf_counter() - t0)
        drifted = _drifted_count(result)
    print(json.dumps({"evidently_version": evidently.__version__, "seconds": times, "drifted_columns_metric": drifted}))


def _drifted_count(result: dict):
    for m in result.get("metrics", []):
        if "DriftedColumnsCount" in str(m.get("metric_name", "")):
            return {k: float(v) for k, v in m["value"].items()}
    return None


if __name__ == "__main__":
    main()
