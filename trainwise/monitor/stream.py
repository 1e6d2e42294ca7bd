"""Out-of-core profiles of Parquet data: a reference file or folder, and the prediction log's windows.

Parquet files are read one record batch at a time (pyarrow), so memory stays bounded by the batch
size, the window count and the profiles, not by the rows: a week of logs at 1,000 requests per
second is profiled in one pass. The log takes two passes: the first reads only `timestamp` and
`model_version` to cut windows exactly as the in-memory path does (per served version, by time or
by row count, oldest first); the second profiles every batch's rows into their window's profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainwise.errors import DataError
from trainwise.monitor import logschema as ls
from trainwise.monitor import sketch
from trainwise.monitor.data import _timestamp, parse_window

BATCH_ROWS = 65_536
LAYOUT_SAMPLE_ROWS = 200_000  # rows whose quantiles give a large reference's bin edges


@dataclass
class WindowCut:
    label: str
    start: str
    end: str
    n_rows: int
    model_version: str | None


def parquet_files(path: Path, what: str = "a prediction log") -> list[str]:
    """The Parquet files of a file or folder, in a fixed order; a folder without any is an error."""
    if path.is_file():
        return [str(path)]
    files = sorted(str(f) for f in path.rglob("*.parquet") if not f.name.startswith("."))
    if not files:
        raise DataError(f"{path} holds no .parquet files; expected {what} (a folder of Parquet files)")
    return files


def _batches(files: list[str], columns: list[str]):
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            have = [c for c in columns if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=have):
                table = pa.Table.from_batches([batch])
                for c in columns:  # a column this file lacks (an older version's log) reads as null
                    if c not in have:
                        table = table.append_column(c, pa.nulls(table.num_rows))
                yield table
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{f} could not be read as Parquet: {e}") from None


def _schema(files: list[str]):
    try:  # a text column may be dictionary-encoded in one file and plain in another: compare value types
        schemas = [pq.read_schema(f) for f in files]
        plain = [pa.schema([f.with_type(_value_type(f.type)) for f in s]) for s in schemas]
        return pa.unify_schemas(plain, promote_options="permissive")
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"the Parquet files in {Path(files[0]).parent} cannot be read as one table: {e}") from None


def _value_type(t):
    return t.value_type if pa.types.is_dictionary(t) else t


def profile_parquet(path: str | Path, tested, label_column: str = ls.LABEL, n_bins: int = sketch.N_BINS) -> dict:
    """The profile of a Parquet file or folder, read batch by batch; `tested(names)` picks the columns.

    The bin edges come from the quantiles of a seeded Bernoulli sample of at most
    LAYOUT_SAMPLE_ROWS rows (exact when the data are smaller); the counts are over every row.
    """
    files = parquet_files(Path(path), "reference data")
    names = _schema(files).names
    columns = list(dict.fromkeys(tested(names) + ([label_column] if label_column in names else [])))
    n_total = sum(_row_count(f) for f in files)
    rate = min(1.0, LAYOUT_SAMPLE_ROWS / max(n_total, 1))
    rng = np.random.default_rng(0)
    picked = [t.filter(rng.random(t.num_rows) < rate) if rate < 1 else t for t in _batches(files, columns)]

    layout = sketch.profile_layout(pa.concat_tables(picked, promote_options="permissive"), n_bins)
    del picked
    profile = None
    for table in _batches(files, columns):
        part = sketch.profile_partition(table, layout, carry=(label_column,), max_hash=_sample_bound(profile))
        profile = part if profile is None else sketch.merge_profiles([profile, part])
    return profile


def _sample_bound(profile: dict | None) -> int | None:
    """The largest hash a full sample holds: rows hashed above it cannot enter the merged sample."""
    if profile is None or len(profile["sample"]["hashes"]) < profile["sample"]["size"]:
        return None
    return profile["sample"]["hashes"][-1]


def _row_count(f: str) -> int:
    return pq.ParquetFile(f).metadata.num_rows


# ----------------------------------------------------------------------------------------------
def cut_log_windows(
    log_dir: str | Path,
    window: str,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    complete_only: bool = False,
) -> tuple[list[WindowCut], np.ndarray, list[str]]:
    """(windows oldest first, window index of every row in file order (-1: not read), files).

    Reads only `timestamp` and `model_version`; the windows equal data.load_log_windows's.
    """

    kind, size = parse_window(window)
    folder = Path(log_dir)
    if not folder.is_dir():
        raise DataError(f"--log {folder} is not a directory; expected a folder of Parquet prediction-log files")
    files = parquet_files(folder)
    schema = _schema(files)
    ls.check_log_columns(schema.names, f"the prediction log {folder}")
    has_version = ls.MODEL_VERSION in schema.names

    ts_type = schema.field(ls.TIMESTAMP).type
    ts, versions = _times_and_versions(files, ts_type, has_version)
    keep = np.ones(len(ts), dtype=bool)
    for bound, op in ((since, np.greater_equal), (until, np.less), (after, np.greater)):
        if bound:
            value = pd.Timestamp(_timestamp(bound, ts_type).as_py())
            value = value.tz_localize(ts.dt.tz) if value.tzinfo is None and ts.dt.tz else value
            keep &= op(ts, value).to_numpy()
    if not keep.any():
        span = f" between {since or after or 'the start'} and {until or 'the end'}" if since or until or after else ""
        raise DataError(f"the prediction log {folder} has no rows{span}; nothing to monitor")
    frame = pd.DataFrame({"ts": ts, "version": versions})[keep]
    frame = frame.sort_values("ts", kind="stable")
    if kind == "rows":
        rank = frame.groupby("version", sort=False, observed=True).cumcount().to_numpy()
        key = (rank // size).astype(np.int64)
        sizes = frame.groupby([frame["version"].to_numpy(), key], sort=False)["ts"].transform("size")
        complete = sizes.to_numpy() >= size
    else:
        floored = frame["ts"].dt.floor(size)
        key = floored.astype("int64").to_numpy()
        now = pd.Timestamp.now(tz="UTC") if frame["ts"].dt.tz else pd.Timestamp.now(tz="UTC").tz_localize(None)
        complete = (floored + pd.Timedelta(size) <= now).to_numpy()
    frame = frame.assign(key=key)
    if complete_only:
        frame = frame[complete]
    groups = frame.groupby([frame["version"].to_numpy(), frame["key"].to_numpy()], sort=False)
    spans = groups["ts"].agg(["min", "max", "size"])
    rank = np.empty(len(spans), dtype=np.int64)
    rank[np.argsort(spans["min"].to_numpy(), kind="stable")] = np.arange(len(spans))
    row_window = np.full(len(ts), -1, dtype=np.int64)
    row_window[frame.index.to_numpy()] = rank[groups.ngroup().to_numpy()]
    spans = spans.iloc[np.argsort(spans["min"].to_numpy(), kind="stable")]
    cuts = [
        WindowCut(f"w{i}", str(lo), str(hi), int(n), (version if has_version else None))
        for i, ((version, _), (lo, hi, n)) in enumerate(spans.iterrows())
    ]
    return cuts, row_window, files


def _times_and_versions(files: list[str], ts_type, has_version: bool) -> tuple[pd.Series, pd.Series]:
    """Every row's timestamp and model_version (as a category: a string per row would not fit)."""

    stamps, codes, names = [], [], {}
    for table in _batches(files, [ls.TIMESTAMP] + ([ls.MODEL_VERSION] if has_version else [])):
        stamps.append(table.column(ls.TIMESTAMP).cast(ts_type).combine_chunks())
        if has_version:
            enc = table.column(ls.MODEL_VERSION).cast(pa.string()).combine_chunks().dictionary_encode()
            ids = np.array([names.setdefault(str(v), len(names)) for v in enc.dictionary.to_pylist()] or [0])
            codes.append(ids[enc.indices.fill_null(0).to_numpy(zero_copy_only=False)])
    ts = (
        pd.Series(pa.chunked_array(stamps, type=ts_type).to_pandas())
        if stamps
        else pd.Series([], dtype="datetime64[ns]")
    )
    ts = pd.to_datetime(ts)
    if not has_version:
        return ts, pd.Series(pd.Categorical.from_codes(np.zeros(len(ts), dtype=np.int64), [""]))
    labels = list(names) or [""]
    return ts, pd.Series(pd.Categorical.from_codes(np.concatenate(codes), labels))


def profile_log_windows(
    files: list[str], row_window: np.ndarray, layouts: list[dict], label_column: str = ls.LABEL
) -> tuple[list[dict], list[pd.DataFrame | None]]:
    """Each window's profile on its own layout, and its performance rows (prediction, prob_*, label)."""

    schema_names = _schema(files).names
    perf_columns = [c for c in schema_names if c in (ls.PREDICTION, label_column) or c.startswith(ls.PROB_PREFIX)]
    needed = list(dict.fromkeys([c for lay in layouts for c in lay] + perf_columns))
    profiles: list[dict | None] = [None] * len(layouts)
    perf: list[list] = [[] for _ in layouts]
    at = 0
    for table in _batches(files, needed):
        ids = row_window[at : at + table.num_rows]
        at += table.num_rows
        for w in np.unique(ids[ids >= 0]):
            rows = table.filter(pa.array(ids == w))
            part = sketch.profile_partition(
                rows.select(list(layouts[w])), layouts[w], max_hash=_sample_bound(profiles[w])
            )
            profiles[w] = part if profiles[w] is None else sketch.merge_profiles([profiles[w], part])
            if perf_columns:  # strings as dictionaries: one string per row would not fit at 10M rows
                perf[w].append(pa.table({c: _compact(rows.column(c)) for c in perf_columns}))
    frames = [pa.concat_tables(p, promote_options="permissive").to_pandas() if p else None for p in perf]
    return profiles, frames


def _compact(col):
    if pa.types.is_dictionary(col.type):  # one index type for every batch, so the batches concatenate
        col = col.cast(col.type.value_type)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string()).dictionary_encode()
    return col
