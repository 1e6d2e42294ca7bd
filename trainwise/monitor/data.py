"""Reading what the monitor compares: Parquet/CSV files, a run's reference or evaluation data, the prediction log.

The prediction log is a folder of Parquet files in the layout of trainwise.monitor.logschema (a
`timestamp` column, request metadata, `in_` inputs, `prediction`, `prob_<class>`, `label`); it is
read with pyarrow.dataset, filtered on time, and cut into windows of a duration (`1h`, `30m`,
`1d`) or of a row count (`10000rows`). Every table is returned in the monitor's one layout
(`logschema.to_monitor_layout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trainwise.errors import DataError
from trainwise.monitor import logschema as ls
from trainwise.monitor.labels import join_labelled

TIMESTAMP = ls.TIMESTAMP
_DURATION = re.compile(r"^(\d+)(s|min|m|h|d)$")
_ROWS = re.compile(r"^(\d+)rows$")
_UNITS = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D"}


@dataclass
class Window:
    label: str
    start: str
    end: str
    frame: pd.DataFrame
    model_version: str | None = None  # the model that served the window's rows (None: a log without model_version)


def load_table(path: str | Path) -> pd.DataFrame:
    """A Parquet or CSV file, a folder of Parquet files, or a run directory (its training reference
    model/reference.parquet, else its eval/predictions.parquet), in the monitor's layout."""
    return ls.to_monitor_layout(_read_table(path))


def _read_table(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if p.is_dir() and (p / "model" / "reference.parquet").is_file():
        p = p / "model" / "reference.parquet"
    elif p.is_dir() and (p / "eval" / "predictions.parquet").is_file():
        p = p / "eval" / "predictions.parquet"
    if not p.exists():
        raise DataError(
            f"{p} does not exist; expected a Parquet or CSV file, a folder of Parquet files or a run directory"
        )
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
    """The folder's Parquet files as one dataset; its schema is the union of theirs (a hot-swapped
    version may log other prob_<class> columns; a column a file lacks reads as null)."""
    # lazy: pyarrow.dataset is only needed to read a partitioned log directory, a rare path
    import pyarrow.dataset as ds

    files = sorted(str(f) for f in folder.rglob("*.parquet") if not f.name.startswith("."))
    if not files:
        raise DataError(f"{folder} holds no .parquet files; expected a prediction log (a folder of Parquet files)")
    try:
        schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"the Parquet files in {folder} cannot be read as one table: {e}") from None
    return ds.dataset(files, format="parquet", schema=schema)


def parse_window(spec: str) -> tuple[str, object]:
    """('time', pandas frequency) for '1h', '30m', '1d'; ('rows', n) for '10000rows'."""
    m = _ROWS.match(spec.strip())
    if m and int(m.group(1)) > 0:
        return "rows", int(m.group(1))
    m = _DURATION.match(spec.strip())
    if m and int(m.group(1)) > 0:
        return "time", f"{int(m.group(1))}{_UNITS[m.group(2)]}"
    raise DataError(f"--window {spec!r}: expected a duration such as 1h, 30m, 1d or a row count such as 10000rows")


def load_log_windows(
    log_dir: str | Path,
    window: str,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    labels: str | None = None,
    label_column: str = ls.LABEL,
    complete_only: bool = False,
) -> tuple[list[Window], dict | None]:
    """The prediction log cut into consecutive windows, oldest first, and the label-join report.

    `after` reads rows strictly later than a timestamp (the watch loop's bookmark); `labels` joins
    a labels file on request id first; `complete_only` drops a last window still filling up (fewer
    rows than a row window, or a time window that has not ended yet). A window never mixes model
    versions: each version's rows are cut separately, so each window is judged against the
    reference of the model that served it.
    """
    kind, size = parse_window(window)
    frame = read_log(log_dir, since, until, after)
    report = None
    if labels:
        frame, report = join_labels(frame, labels, label_column, log_keys(log_dir))
    versions = (
        frame[ls.MODEL_VERSION].astype(str) if ls.MODEL_VERSION in frame.columns else pd.Series("", index=frame.index)
    )
    groups = []
    for _version, rows in frame.groupby(versions, sort=False):
        if kind == "rows":
            groups += [(rows.iloc[i : i + size], len(rows) - i >= size) for i in range(0, len(rows), size)]
        else:
            keys = rows[TIMESTAMP].dt.floor(size)
            now = (
                pd.Timestamp.now(tz="UTC") if keys.dt.tz else pd.Timestamp.now(tz="UTC").tz_localize(None)
            )  # naive = UTC
            groups += [(g, key + pd.Timedelta(size) <= now) for key, g in rows.groupby(keys, sort=True)]
    if complete_only:
        groups = [(g, True) for g, complete in groups if complete]
    groups.sort(key=lambda item: item[0][TIMESTAMP].iloc[0])
    return [
        Window(
            label=f"w{i}",
            start=str(g[TIMESTAMP].iloc[0]),
            end=str(g[TIMESTAMP].iloc[-1]),
            frame=g.reset_index(drop=True),
            model_version=str(g[ls.MODEL_VERSION].iloc[0]) if ls.MODEL_VERSION in g.columns else None,
        )
        for i, (g, _) in enumerate(groups)
    ], report


def log_keys(log_dir: str | Path) -> pd.DataFrame | None:
    """request_id (and instance) of every row of the log: which labelled ids the log holds at all."""
    dataset = _read_dataset(Path(log_dir))
    key = [c for c in (ls.REQUEST_ID, ls.INSTANCE) if c in dataset.schema.names]
    return dataset.to_table(columns=key).to_pandas() if ls.REQUEST_ID in key else None


def read_log(
    log_dir: str | Path, since: str | None = None, until: str | None = None, after: str | None = None
) -> pd.DataFrame:
    """The log's rows in [since, until) and after `after`, sorted by time; errors name what is missing."""

    folder = Path(log_dir)
    if not folder.is_dir():
        raise DataError(f"--log {folder} is not a directory; expected a folder of Parquet prediction-log files")
    dataset = _read_dataset(folder)
    ls.check_log_columns(dataset.schema.names, f"the prediction log {folder}")
    expr = None
    ts_type = dataset.schema.field(TIMESTAMP).type
    for bound, op in ((since, pc.greater_equal), (until, pc.less), (after, pc.greater)):
        if bound:
            value = _timestamp(bound, ts_type)
            cond = op(pc.field(TIMESTAMP), value)
            expr = cond if expr is None else expr & cond
    frame = dataset.to_table(filter=expr).to_pandas()
    if frame.empty:
        span = f" between {since or after or 'the start'} and {until or 'the end'}" if since or until or after else ""
        raise DataError(f"the prediction log {folder} has no rows{span}; nothing to monitor")
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP])
    return frame.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)


def _timestamp(text: str, ts_type):
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


def join_labels(
    frame: pd.DataFrame, path: str | Path, label_column: str = ls.LABEL, log_keys: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict]:
    """`frame` (log rows) with labels from the file at `path` filled in, and a report of the join.

    `log_keys` (request_id, instance of the whole log) tells labels of rows outside `frame` (other
    windows, or before --since) from ids the log never held; without it both count as unknown.
    """
    return join_labelled(frame, load_table(path), label_column, str(path), log_keys)
