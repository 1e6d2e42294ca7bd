"""The streaming path (profiles read batch by batch) decides as the in-memory path does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainwise.config import MonitorConfig
from trainwise.monitor.check import check_windows, frame_profile
from trainwise.monitor.drift import DriftMonitor
from trainwise.monitor.sketch import profile_partition

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from monitor_data import make_mixed  # noqa: E402


def _compare_decisions(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[dict, dict]:
    in_memory = DriftMonitor().fit(ref).check(cur)
    monitor = DriftMonitor()
    monitor.fit_profile(frame_profile(ref, monitor._tested, "label"))
    streamed = monitor.check_profile(profile_partition(cur[list(monitor.layout_)], monitor.layout_))
    assert streamed["dataset_drift"] == in_memory["dataset_drift"]
    for a, b in zip(in_memory["columns"], streamed["columns"], strict=True):
        assert (a["name"], a["drift"]) == (b["name"], b["drift"])
        if a["type"] == "numeric":  # a statistic that differs does so within the stated binning bound
            assert b["statistic"] - 1e-12 <= a["statistic"] <= b["statistic"] + b["statistic_bound"] + 1e-12
            assert abs(a["effect_size"] - b["effect_size"]) <= b["effect_size_bound"] + 1e-9
        else:
            # exact counts: the same statistics, to float rounding (categories may be summed in another order)
            for key in ("statistic", "effect_size", "p_value", "psi"):
                assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), (a["name"], key)
    assert in_memory["multivariate"]["drift"] == streamed["multivariate"]["drift"]
    return in_memory, streamed


@pytest.mark.parametrize("drift", [False, True])
def test_same_decisions_on_the_benchmark_tables(drift):
    in_memory, _ = _compare_decisions(make_mixed(100_000, 0), make_mixed(100_000, 1, drift=drift))
    assert in_memory["dataset_drift"] is drift  # the comparison is not vacuous


@pytest.mark.slow
def test_same_decisions_at_one_million_rows():
    """The existing benchmarks' data: 1,000,000 x 20 mixed columns (benchmarks/monitor_data.py)."""
    in_memory, _ = _compare_decisions(make_mixed(1_000_000, 0, as_category=True), make_mixed(1_000_000, 1, drift=True))
    assert {c["name"] for c in in_memory["columns"] if c["drift"]} == {"num_normal", "num_lognormal", "cat_5"}


def test_small_windows_get_the_same_null_thresholds():
    """Thresholds calibrated by resampling the reference agree when the reference is only a profile."""
    ref = make_mixed(20_000, 0)
    in_memory = DriftMonitor().fit(ref)
    profiled = DriftMonitor()
    profiled.fit_profile(frame_profile(ref, profiled._tested, "label"))
    for n in (100, 1_000):
        a, b = in_memory.null_thresholds(n), profiled.null_thresholds(n)
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=0.1), (name, n)


def write_log(folder: Path, n_per_hour: int = 3_000, hours: int = 3) -> pd.DataFrame:
    """A prediction log of `hours` hourly parts, the last one drifted, in several files."""
    folder.mkdir(parents=True)
    parts = []
    for h in range(hours):
        part = make_mixed(n_per_hour, seed=10 + h, drift=h == hours - 1, n_numeric=4, n_categorical=3)
        part = part.add_prefix("in_")
        part.insert(
            0,
            "timestamp",
            pd.Timestamp("2026-11-22 10:00", tz="UTC")
            + pd.to_timedelta(np.sort(np.random.default_rng(h).uniform(0, 3600, n_per_hour)) + 3600 * h, unit="s"),
        )
        part.insert(1, "request_id", [f"r{h}-{i}" for i in range(n_per_hour)])
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    shuffled = frame.sample(frac=1, random_state=0)  # files out of time order
    for i in range(4):
        shuffled.iloc[i::4].to_parquet(folder / f"part-{i}.parquet", index=False)
    return frame


@pytest.mark.parametrize("window", ["1h", "2500rows"])
def test_log_windows_streamed_as_in_memory(tmp_path, window):
    log = tmp_path / "log"
    frame = write_log(log)
    reference = tmp_path / "ref.parquet"
    make_mixed(5_000, 0, n_numeric=4, n_categorical=3).add_prefix("in_").to_parquet(reference)
    cfg = MonitorConfig()
    streamed = check_windows(str(log), cfg, window, reference=str(reference))
    in_memory = check_windows(str(log), cfg, window, reference=str(reference), keep_rows=True)
    assert streamed.streamed and not in_memory.streamed
    keys = ("label", "start", "end", "n_rows", "dataset_drift", "drifted_columns", "reference")
    assert [{k: w[k] for k in keys} for w in streamed.windows] == [{k: w[k] for k in keys} for w in in_memory.windows]
    assert sum(w["n_rows"] for w in streamed.windows) == len(frame)
    assert streamed.windows[-1]["dataset_drift"] and not streamed.windows[0]["dataset_drift"]
    assert streamed.last_window_end == in_memory.last_window_end
    bounded = check_windows(str(log), cfg, window, since="2026-11-22T11:00", reference=str(reference))
    assert sum(w["n_rows"] for w in bounded.windows) == 6_000


def test_log_without_model_version_uses_its_first_window(tmp_path):
    log = tmp_path / "log"
    write_log(log)
    cfg = MonitorConfig()
    streamed = check_windows(str(log), cfg, "1h")
    in_memory = check_windows(str(log), cfg, "1h", keep_rows=True)
    assert [w["dataset_drift"] for w in streamed.windows] == [w["dataset_drift"] for w in in_memory.windows]
    assert [w["dataset_drift"] for w in streamed.windows] == [False, True]
    assert streamed.drift["reference"]["source"] == in_memory.drift["reference"]["source"]


def test_log_folder_without_parquet_files_is_one_clear_line(run_cli, tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "notes.txt").write_text("not a log")
    code, out, err = run_cli("monitor", "--log", tmp_path / "log", "--reference", tmp_path / "log")
    assert code == 2
    assert err.strip().count("\n") == 0 and "holds no .parquet files" in err and "Traceback" not in err


def test_text_columns_dictionary_encoded_in_some_files_only(tmp_path):
    """pandas category columns are written as Parquet dictionaries: files of one log may differ in that."""
    log = tmp_path / "log"
    write_log(log)
    first = pd.read_parquet(log / "part-0.parquet")
    first["in_cat_2"] = first["in_cat_2"].astype("category")
    first.to_parquet(log / "part-0.parquet", index=False)
    result = check_windows(str(log), MonitorConfig(), "1h")
    assert result.streamed and sum(w["n_rows"] for w in result.windows) == 6_000  # the first hour is the reference


def test_files_whose_column_types_conflict_are_one_clear_line(run_cli, tmp_path):
    log = tmp_path / "log"
    write_log(log)
    first = pd.read_parquet(log / "part-0.parquet")
    first["in_num_normal"] = first["in_num_normal"].astype(str)
    first.to_parquet(log / "part-0.parquet", index=False)
    code, _, err = run_cli("monitor", "--log", log)
    assert code == 2 and err.strip().count("\n") == 0 and "cannot be read as one table" in err
