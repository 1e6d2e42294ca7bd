"""The monitor's library entry points: plain values in, a `Result` out (the CLI only parses arguments).

`check_files` compares a reference table with a current one; `check_windows` compares every window
of the prediction log with its reference. A log on disk is profiled out of core
(trainwise.monitor.stream: bounded memory however many rows) unless rows must be held: labels to
join (`labels`), columns to intersect (`common_columns`) or the latest window's rows for retraining
(`keep_rows`), which read the rows into memory as before. Both paths decide drift the same way
(docs/monitor.md, "Streaming profiles").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trainwise.errors import DataError
from trainwise.monitor import refsource
from trainwise.monitor.data import join_labels, load_table
from trainwise.monitor.logschema import training_rows
from trainwise.monitor.pipeline import real_steps
from trainwise.monitor.reference import REFERENCE_PROFILE, frame_profile  # noqa: F401  (the monitor's API)
from trainwise.monitor.refsource import reference_profile  # noqa: F401  (the monitor's API)
from trainwise.monitor.retrain import run_retraining
from trainwise.monitor.triggers import build_monitor, evaluate_triggers
from trainwise.monitor.windows_memory import check_log_in_memory
from trainwise.monitor.windows_stream import check_log_streaming


@dataclass
class Result:
    """drift: the drift.json dictionary (with windows: the latest window's, plus the `windows` timeline);
    rows: the rows judged last (None when the log was streamed); streamed: whether it was."""

    drift: dict
    rows: pd.DataFrame | None = None
    streamed: bool = False
    windows: list = field(default_factory=list)

    @property
    def last_window_end(self) -> str | None:
        return self.windows[-1]["end"] if self.windows else None


def check_files(
    reference: str,
    current: str,
    cfg,
    labels: str | None = None,
    common_columns: bool = False,
    model_age_days: float | None = None,
) -> Result:
    """--reference against --current (labels joined into current), in memory."""

    if not (reference and current):
        raise DataError("give --reference and --current (Parquet/CSV files), or --log DIR --window 1h")
    ref_frame, cur_frame = load_table(reference), load_table(current)
    joined = None
    if labels:
        cur_frame, joined = join_labels(cur_frame, labels, cfg.label_column)
    dropped: list[str] = []
    if common_columns:
        ref_frame, dropped = refsource.common_columns(ref_frame, [cur_frame], keep=[cfg.label_column])
    drift = build_monitor(cfg).fit(ref_frame).check(cur_frame)
    drift.update(
        reference={"source": f"--reference {reference}", "n_rows": len(ref_frame)},
        dropped_columns=dropped,
        labels=joined,
    )
    return _with_triggers(Result(drift, rows=cur_frame), cfg, model_age_days)


def check_windows(
    log: str,
    cfg,
    window: str = "1h",
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    reference: str | None = None,
    labels: str | None = None,
    tracking_uri: str | None = None,
    common_columns: bool = False,
    complete_only: bool = False,
    model_age_days: float | None = None,
    keep_rows: bool = False,
) -> Result:
    """Every window of the log against its reference: the latest window's result plus the timeline."""
    if labels or common_columns or keep_rows:
        drift, rows = check_log_in_memory(
            log, cfg, window, since, until, after, reference, labels, tracking_uri, common_columns, complete_only
        )
        return _with_triggers(Result(drift, rows=rows, windows=drift["windows"]), cfg, model_age_days)

    drift = check_log_streaming(log, cfg, window, since, until, after, reference, tracking_uri, complete_only)
    return _with_triggers(Result(drift, streamed=True, windows=drift["windows"]), cfg, model_age_days)


def _with_triggers(result: Result, cfg, model_age_days: float | None) -> Result:
    result.drift["triggers"] = [t.to_dict() for t in evaluate_triggers(result.drift, cfg, model_age_days)]
    return result


def act_on_triggers(
    fired: list[dict],
    frame,
    cfg,
    model: str | None,
    alias: str = "champion",
    gate: str | None = None,
    tracking_uri: str | None = None,
    retrain_set: tuple = (),
    out: str | None = None,
) -> dict:
    """Retrain `model` on `frame`'s labelled rows (the model's raw input columns) through the gate when a
    trigger fired; the CLI's --act and watch call it."""

    if not model:
        raise DataError("--act needs --model NAME: the registered model the triggers act on")
    if not fired:
        return {"decision": "none", "triggers": []}
    if cfg.label_column not in frame.columns:
        raise DataError(
            f"a trigger fired but the window has no {cfg.label_column!r} column: retraining needs labelled rows "
            "(monitor.label_column)"
        )
    rows = training_rows(frame, cfg.label_column).dropna(subset=[cfg.label_column])
    if len(rows) < cfg.min_window_rows:
        raise DataError(
            f"a trigger fired but only {len(rows)} rows of the window are labelled (at least monitor.min_window_rows = "
            f"{cfg.min_window_rows} needed to retrain); give --labels FILE with the labels that have arrived"
        )
    work = Path(out or "runs") / f"retrain-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True, exist_ok=True)
    steps = real_steps(model, alias, cfg.label_column, work, tracking_uri, gate, tuple(retrain_set))
    return run_retraining(fired, rows, work, steps)


# ----------------------------------------------------------------------------------------------
