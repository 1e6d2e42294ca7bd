"""Labels that arrive after the predictions: joined into the log on request id.

A labels file (CSV or Parquet) has a `request_id` column and a label column (`monitor.label_column`,
default `label`), and optionally `instance` (the position within a request, for requests that
carried several instances). Each key appears once; ids the log rows read do not hold are counted
and reported, not guessed at. The server answers every prediction with its request id in the
`X-Request-ID` header (or echoes the client's own), which is how a client keeps it.

>>> import pandas as pd
>>> log = pd.DataFrame({"request_id": ["a", "b"], "instance": [0, 0], "label": [None, None]})
>>> lab = pd.DataFrame({"request_id": ["b", "zz"], "label": ["yes", "no"]})
>>> frame, report = join_labelled(log, lab, "label", "labels.csv")
>>> frame["label"].tolist(), report["n_joined"], report["n_unknown"]
([None, 'yes'], 1, 1)
"""

from __future__ import annotations

import pandas as pd

from trainwise.errors import DataError
from trainwise.monitor import logschema as ls

MAX_LISTED = 5


def join_labelled(
    frame: pd.DataFrame, labels: pd.DataFrame, label_column: str, where: str, log_keys: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict]:
    # Over 60 lines on purpose: the join's checks in order (columns, duplicates, coverage), each with its own one-line
    # error naming the file and column
    key = [ls.REQUEST_ID] + ([ls.INSTANCE] if ls.INSTANCE in labels.columns else [])
    missing = [c for c in (ls.REQUEST_ID, label_column) if c not in labels.columns]
    if missing:
        raise DataError(
            f"labels file {where} lacks the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} (columns: {', '.join(map(str, labels.columns))}); "
            f"expected request_id and {label_column} (and optionally instance)"
        )
    if ls.REQUEST_ID not in frame.columns:
        raise DataError(
            f"labels file {where} joins on {ls.REQUEST_ID!r}, which the monitored data lacks (a prediction log has it)"
        )
    labels = labels[key + [label_column]].dropna(subset=[label_column])
    labels = labels.assign(**{ls.REQUEST_ID: labels[ls.REQUEST_ID].astype(str)})
    if ls.INSTANCE in key:
        labels = labels.assign(**{ls.INSTANCE: pd.to_numeric(labels[ls.INSTANCE], errors="coerce").astype("Int64")})
    rows = frame.assign(**{ls.REQUEST_ID: frame[ls.REQUEST_ID].astype(str)})
    if ls.INSTANCE not in key:
        _refuse_ambiguous(rows, labels, where)
    else:
        rows = rows.assign(**{ls.INSTANCE: rows[ls.INSTANCE].astype("Int64")})
    duplicated = labels[labels.duplicated(key, keep=False)]
    if len(duplicated):
        shown = ", ".join(map(str, duplicated[ls.REQUEST_ID].drop_duplicates().iloc[:MAX_LISTED]))
        raise DataError(
            f"labels file {where}: {duplicated[key].drop_duplicates().shape[0]} {'/'.join(key)} keys appear "
            f"more than once (e.g. {shown}); expected one label per key"
        )
    joined = rows[key].merge(labels, on=key, how="left", validate="many_to_one")[label_column]
    joined.index = frame.index
    existing = (
        frame[label_column] if label_column in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    )
    out = frame.copy()
    merged = joined.astype(object).where(joined.notna(), existing.astype(object))
    out[label_column] = pd.Series([None if pd.isna(v) else str(v) for v in merged], index=frame.index, dtype=object)
    read = _held(labels, rows, key)
    known = (
        read
        if log_keys is None
        else _held(
            labels,
            log_keys.assign(**{ls.REQUEST_ID: log_keys[ls.REQUEST_ID].astype(str)}).astype(
                {ls.INSTANCE: "Int64"} if ls.INSTANCE in key else {}
            ),
            key,
        )
    )
    unknown = labels.loc[~known, ls.REQUEST_ID]
    report = {
        "file": where,
        "n_labels": len(labels),
        "n_joined": int(joined.notna().sum()),
        "n_outside": int((known & ~read).sum()),
        "n_unknown": len(unknown),
        "unknown_examples": unknown.iloc[:MAX_LISTED].tolist(),
    }
    return out, report


def _held(labels: pd.DataFrame, rows: pd.DataFrame, key: list[str]):
    """Per label: does `rows` hold its key?"""
    return (
        labels.merge(rows[key].drop_duplicates(), on=key, how="left", indicator=True)["_merge"] == "both"
    ).to_numpy()


def _refuse_ambiguous(rows: pd.DataFrame, labels: pd.DataFrame, where: str) -> None:
    """A request with several instances needs `instance` in the labels: one label cannot fit them all."""
    counts = rows[ls.REQUEST_ID].value_counts()
    multi = counts[counts > 1]
    hit = labels[ls.REQUEST_ID][labels[ls.REQUEST_ID].isin(multi.index)]
    if len(hit):
        first = hit.iloc[0]
        raise DataError(
            f"labels file {where}: request {first!r} carried {int(multi[first])} instances, so its label is ambiguous; "
            f"add an {ls.INSTANCE!r} column (0-based position within the request)"
        )


def labels_text(report: dict) -> str:
    outside = f"; {report['n_outside']} for log rows outside those read" if report.get("n_outside") else ""
    unknown = (
        f"; {report['n_unknown']} with ids the log does not hold (e.g. {', '.join(report['unknown_examples'])})"
        if report["n_unknown"]
        else ""
    )
    joined = f"labels: {report['n_joined']} rows labelled from {report['file']}"
    return f"{joined} ({report['n_labels']} labels{outside}{unknown})"
