"""Reading what the monitor compares: Parquet/CSV files, a run's evaluation data, the prediction log.

The prediction log is a folder of Parquet files with a `timestamp` column (the serving log's
layout); it is read with pyarrow.dataset, filtered on time, and cut into windows of a duration
(`1h`, `30m`, `1d`) or of a row count (`10000rows`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from trainwise.errors import DataError

TIMESTAMP = "timestamp"
_DURATION = re.compile(r"^(\d+)(s|min|m|h|d)$")
_ROWS = re.compile(r"^(\d+)rows$")
_UNITS = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D"}


@dataclass
class Window:
    label: str
    start: str
    end: str
    frame: pd.DataFrame


def load_table(path: str | Path) -> pd.DataFrame:
    """A Parquet or CSV file, a folder of Parquet files, or a run directory (its eval/predictions.parquet)."""
    p = Path(path)
    if p.is_dir() and (p / "eval" / "predictions.parquet").is_file():
        p = p / "eval" / "predictions.parquet"
    if not p.exists():
        raise DataError(f"{p} does not exist; expected a Parquet or CSV file, a folder of Parquet files or a run directory")
    try:
        if p.is_dir():
            return _read_dataset(p).to_table().to_pandas()
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if p.suffix.lower() == ".csv":
            return pd.read_csv(p)
    except (OSError, ValueError) as e:  # pyarrow and pandas raise these for unreadable files
        raise DataError(f"{p} could not be read: {e}") from None
    raise DataError(f"{p}: unknown file type {p.suffix!r}; expected .parquet or .csv")


def _read_dataset(folder: Path):
    import pyarrow.dataset as ds

    files = sorted(str(f) for f in folder.rglob("*.parquet"))
    if not files:
        raise DataError(f"{folder} holds no .parquet files; expected a prediction log (a folder of Parquet files)")
    return ds.dataset(files, format="parquet")


def parse_window(spec: str) -> tuple[str, object]:
    """('time', pandas frequency) for '1h', '30m', '1d'; ('rows', n) for '10000rows'."""
    m = _ROWS.match(spec.strip())
    if m and int(m.group(1)) > 0:
        return "rows", int(m.group(1))
    m = _DURATION.match(spec.strip())
    if m and int(m.group(1)) > 0:
        return "time", f"{int(m.group(1))}{_UNITS[m.group(2)]}"
    raise DataError(f"--window {spec!r}: expected a duration such as 1h, 30m, 1d or a row count such as 10000rows")


def load_log_windows(log_dir: str | Path, window: str, since: str | None = None, until: str | None = None) -> list[Window]:
    """The prediction log cut into consecutive windows, oldest first."""
    import pyarrow.compute as pc

    kind, size = parse_window(window)
    folder = Path(log_dir)
    if not folder.is_dir():
        raise DataError(f"--log {folder} is not a directory; expected a folder of Parquet prediction-log files")
    dataset = _read_dataset(folder)
    if TIMESTAMP not in dataset.schema.names:
        raise DataError(f"the prediction log {folder} has no {TIMESTAMP!r} column (columns: {', '.join(dataset.schema.names)})")
    expr = None
    ts_type = dataset.schema.field(TIMESTAMP).type
    for bound, op in ((since, pc.greater_equal), (until, pc.less)):
        if bound:
            value = _timestamp(bound, ts_type)
            cond = op(pc.field(TIMESTAMP), value)
            expr = cond if expr is None else expr & cond
    frame = dataset.to_table(filter=expr).to_pandas()
    if frame.empty:
        span = f" between {since or 'the start'} and {until or 'the end'}" if since or until else ""
        raise DataError(f"the prediction log {folder} has no rows{span}; nothing to monitor")
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP])
    frame = frame.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    if kind == "rows":
        groups = [frame.iloc[i : i + size] for i in range(0, len(frame), size)]
    else:
        keys = frame[TIMESTAMP].dt.floor(size)
        groups = [g for _, g in frame.groupby(keys, sort=True)]
    return [Window(label=f"w{i}", start=str(g[TIMESTAMP].iloc[0]), end=str(g[TIMESTAMP].iloc[-1]), frame=g.reset_index(drop=True))
            for i, g in enumerate(groups)]


def _timestamp(text: str, ts_type):
    import pyarrow as pa

    try:
        value = pd.Timestamp(text)
    except ValueError:
        raise DataError(f"{text!r} is not a timestamp; expected ISO 8601 such as 2026-11-22T10:00") from None
    tz = getattr(ts_type, "tz", None)
    if tz and value.tzinfo is None:
        value = value.tz_localize(tz)
    elif not tz and value.tzinfo is not None:
        value = value.tz_convert(None)
    return pa.scalar(value.to_pydatetime(), type=ts_type if pa.types.is_timestamp(ts_type) else None)
