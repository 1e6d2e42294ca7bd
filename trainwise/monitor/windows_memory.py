"""The prediction log's windows read into memory and judged row by row (the path for labels to join,
columns to intersect, or a window's rows kept for retraining; trainwise.monitor.check chooses)."""

from __future__ import annotations

from trainwise.errors import DataError
from trainwise.monitor import refsource
from trainwise.monitor.data import load_log_windows, load_table
from trainwise.monitor.refsource import version_reference
from trainwise.monitor.triggers import build_monitor


def check_log_in_memory(
    log: str,
    cfg,
    window: str,
    since: str | None,
    until: str | None,
    after: str | None,
    reference: str | None,
    labels: str | None,
    tracking_uri: str | None,
    common_columns: bool,
    complete_only: bool,
) -> tuple[dict, object]:
    """(drift dictionary of the latest window plus the `windows` timeline, the latest window's rows)."""
    windows, joined = load_log_windows(
        log,
        window,
        since,
        until,
        after=after,
        labels=labels,
        label_column=cfg.label_column,
        complete_only=complete_only,
    )
    if not windows:
        raise DataError(f"the prediction log {log} has no complete {window} window yet")
    reference_of, windows = reference_source(log, window, reference, tracking_uri, windows)
    monitors: dict[str, tuple] = {}
    results = []
    for w in windows:
        frame, source = reference_of(w)
        if source not in monitors:
            dropped: list[str] = []
            if common_columns:
                frame, dropped = refsource.common_columns(frame, [v.frame for v in windows], keep=[cfg.label_column])
            monitors[source] = (build_monitor(cfg).fit(frame), {"source": source, "n_rows": len(frame)}, dropped)
        monitor, ref, dropped = monitors[source]
        results.append((w, {**monitor.check(w.frame), "reference": ref, "dropped_columns": dropped}))
    result = dict(results[-1][1])  # the latest window, plus the timeline of all of them
    result["windows"] = [window_summary(w, r) for w, r in results]
    result["labels"] = joined
    return result, windows[-1].frame


def reference_source(log: str, window: str, reference: str | None, tracking_uri: str | None, windows: list):
    """(window -> (reference frame, what it is), windows to judge).

    `reference` when given; else the training reference stored with the model version that served
    the window (from the registry); a log without model_version (not written by trainwise serve)
    falls back to its own first window.
    """

    if reference:
        frame = load_table(reference)
        return (lambda w: (frame, f"--reference {reference}")), windows
    if windows[0].model_version is None:
        if len(windows) < 2:
            raise DataError(
                f"the prediction log {log} holds a single {window} window and no model_version column; "
                "give --reference, or a shorter --window"
            )
        first = windows[0]
        return (
            lambda w: (
                first.frame,
                f"first window of the log ({first.start} to {first.end}): it has no model_version column",
            )
        ), windows[1:]
    cache: dict[str, tuple] = {}

    def training(w):
        if w.model_version not in cache:
            cache[w.model_version] = version_reference(w.model_version, tracking_uri)
        return cache[w.model_version]

    return training, windows


def window_summary(window, result: dict) -> dict:
    perf = result.get("performance") or {}
    est = perf.get("estimated")
    real = (perf.get("realised") or {}).get("current")
    return {
        "label": window.label,
        "start": window.start,
        "end": window.end,
        "n_rows": result["n_current"],
        "model_version": window.model_version,
        "reference": result["reference"]["source"],
        "dataset_drift": result["dataset_drift"],
        "prediction_drift": result["prediction_drift"],
        "n_drifted_columns": sum(c["drift"] for c in result["columns"]),
        "drifted_columns": [c["name"] for c in result["columns"] if c["drift"]],
        "estimated_accuracy": est["accuracy"] if est else None,
        "estimated_ci": [est["ci_low"], est["ci_high"]] if est else None,
        "realised_accuracy": real["accuracy"] if real else None,
    }
