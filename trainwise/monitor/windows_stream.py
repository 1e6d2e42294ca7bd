"""The prediction log's windows profiled out of core and judged from their profiles.

Memory is bounded by the batch size and the window profiles, not by the log's rows (10,000,000
rows x 20 columns within 2 GiB: benchmarks/monitor_scale.py). The windows, the reference each one
is judged against and the drift.json fields are those of the in-memory path
(trainwise.monitor.windows_memory); numeric statistics come from binned CDFs with their bounds
(trainwise.monitor.binned).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from trainwise.errors import DataError
from trainwise.monitor.refsource import frame_profile, reference_profile, version_reference
from trainwise.monitor.stream import _batches, _schema, cut_log_windows, profile_log_windows
from trainwise.monitor.triggers import build_monitor
from trainwise.monitor.windows_memory import window_summary


def check_log_streaming(
    log: str,
    cfg,
    window: str,
    since: str | None,
    until: str | None,
    after: str | None,
    reference: str | None,
    tracking_uri: str | None,
    complete_only: bool,
) -> dict:
    # Over 60 lines on purpose: the streaming check's phases in order (reference, schema, windows, per-window
    # summary), sharing the open log and reference
    cuts, row_window, files = cut_log_windows(log, window, since, until, after, complete_only)
    if not cuts:
        raise DataError(f"the prediction log {log} has no complete {window} window yet")
    log_columns = _schema(files).names
    monitors: dict[str, tuple] = {}

    def fitted(source: str, profile_of) -> str:
        if source not in monitors:
            monitor = build_monitor(cfg)
            profile = profile_of(monitor._tested)
            monitor.fit_profile(profile)._check_names(log_columns)
            monitors[source] = (monitor, {"source": source, "n_rows": profile["n_rows"], "profiled": True})
        return source

    if reference:
        source = fitted(f"--reference {reference}", lambda t: reference_profile(reference, t, cfg.label_column))
        sources = [source] * len(cuts)
    elif cuts[0].model_version is None:
        if len(cuts) < 2:
            raise DataError(
                f"the prediction log {log} holds a single {window} window and no model_version column; "
                "give --reference, or a shorter --window"
            )
        first = cuts[0]
        rows = _window_rows(files, row_window, 0, log_columns)
        source = fitted(
            f"first window of the log ({first.start} to {first.end}): it has no model_version column",
            lambda t: frame_profile(rows, t, cfg.label_column),
        )
        sources = [None] + [source] * (len(cuts) - 1)
    else:
        by_version: dict[str, str] = {}
        for cut in cuts:
            if cut.model_version not in by_version:
                frame, what = version_reference(cut.model_version, tracking_uri)
                by_version[cut.model_version] = fitted(what, lambda t, f=frame: frame_profile(f, t, cfg.label_column))
        sources = [by_version[cut.model_version] for cut in cuts]
    judged = [i for i, s in enumerate(sources) if s is not None]
    row_window = np.where(np.isin(row_window, judged), row_window, -1)
    layouts = [monitors[s][0].layout_ if s is not None else {} for s in sources]
    profiles, perf_rows = profile_log_windows(files, row_window, layouts, cfg.label_column)
    results = []
    for i in judged:
        monitor, ref = monitors[sources[i]]
        drift = monitor.check_profile(profiles[i], perf_rows[i])
        results.append((cuts[i], {**drift, "reference": ref, "dropped_columns": []}))
    result = dict(results[-1][1])
    result["windows"] = [window_summary(w, r) for w, r in results]
    result["labels"] = None
    return result


def _window_rows(files: list[str], row_window: np.ndarray, index: int, columns: list[str]):
    """One window's rows in memory (the log's own first window, used as the reference)."""

    parts, at = [], 0
    for table in _batches(files, columns):
        ids = row_window[at : at + table.num_rows]
        at += table.num_rows
        if (ids == index).any():
            rows = table.filter(pa.array(ids == index))
            plain = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in rows.columns]
            parts.append(pa.table(plain, names=rows.column_names))  # files may differ in dictionary encoding
    return pa.concat_tables(parts, promote_options="permissive").to_pandas()
