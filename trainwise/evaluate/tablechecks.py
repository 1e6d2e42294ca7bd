"""Row-level data checks: schema, missing values, class balance, duplicates and train/test leakage.

Rows are compared by 64-bit hashes (pandas' `hash_pandas_object`). Exact duplicates hash the raw
values; near-duplicates hash a normalised copy: text lower-cased with whitespace collapsed, numbers
rounded to 3 significant digits. Leakage counts rows of the other set (test, serving data) whose
features also occur in the reference set (train); the target is left out, since a copied row
with a different label leaks just as much.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

IMBALANCE_RATIO = 10.0  # majority / minority class count above which a table is flagged
NEAR_DIGITS = 3


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            v = s.to_numpy(dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                mag = np.where(v == 0, 0, np.floor(np.log10(np.abs(v))))
            out[c] = np.round(v / 10**mag, NEAR_DIGITS - 1) * 10**mag
        else:
            out[c] = s.astype(str).str.lower().str.split().str.join(" ")
    return pd.DataFrame(out, index=frame.index)


def row_hashes(frame: pd.DataFrame, near: bool = False) -> np.ndarray:
    f = normalise(frame) if near else frame
    return pd.util.hash_pandas_object(f.reset_index(drop=True), index=False).to_numpy()


def tensor_rows(x) -> pd.DataFrame:
    """A (N, ...) tensor as an N-row frame of its flattened values."""
    return pd.DataFrame(x.detach().cpu().reshape(len(x), -1).numpy())


def duplicates(frame: pd.DataFrame) -> dict:
    """Exact duplicate rows, and near-duplicates that are not exact ones (each beyond its first copy)."""
    exact = pd.Series(row_hashes(frame)).duplicated()
    near = pd.Series(row_hashes(frame, near=True)).duplicated() & ~exact
    return {
        "rows": len(frame),
        "exact": int(exact.sum()),
        "near": int(near.sum()),
        "value": int(exact.sum() + near.sum()),
        "examples": np.flatnonzero(exact | near)[:20].tolist(),
    }


def leakage(reference: pd.DataFrame, other: pd.DataFrame) -> dict:
    """Rows of `other` whose (exact or near) copy is in `reference`."""
    exact = np.isin(row_hashes(other), row_hashes(reference))
    near = np.isin(row_hashes(other, near=True), row_hashes(reference, near=True)) & ~exact
    return {
        "rows": len(other),
        "exact": int(exact.sum()),
        "near": int(near.sum()),
        "value": int(exact.sum() + near.sum()),
        "examples": np.flatnonzero(exact | near)[:20].tolist(),
    }


def missing_values(frame: pd.DataFrame) -> dict:
    per_col = frame.isna().sum()
    cells = int(per_col.sum())
    return {
        "cells": cells,
        "share": cells / max(frame.size, 1),
        "value": cells / max(frame.size, 1),
        "columns": {str(c): int(v) for c, v in per_col.items() if v},
    }


def class_balance(labels: pd.Series) -> dict:
    counts = labels.astype(str).value_counts()
    ratio = float(counts.iloc[0] / counts.iloc[-1]) if len(counts) else 0.0
    return {
        "counts": {str(k): int(v) for k, v in counts.items()},
        "majority_to_minority": ratio,
        "minority_share": float(counts.iloc[-1] / counts.sum()) if len(counts) else 0.0,
        "value": ratio,
    }


def schema(frame: pd.DataFrame) -> dict:
    return {"rows": len(frame), "columns": {str(c): str(t) for c, t in frame.dtypes.items()}}


def schema_mismatch(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Differences between two tables' columns and dtypes, as sentences."""
    sa, sb = schema(a)["columns"], schema(b)["columns"]
    out = [f"column {c!r} only in the first table" for c in sa if c not in sb]
    out += [f"column {c!r} only in the other table" for c in sb if c not in sa]
    out += [
        f"column {c!r} is {sa[c]} in the first table but {sb[c]} in the other" for c in sa if c in sb and sa[c] != sb[c]
    ]
    return out


def missing_markers(readings: dict) -> dict[str, str]:
    """Numeric column -> the text of the cells read as missing ("'?' x7"), from the table's readings."""
    return {name: r.describe_tokens() for name, r in readings.items() if r.kind == "numeric" and r.missing_tokens}


def suspect_columns(readings: dict) -> list[str]:
    """Columns that are mostly numbers but hold other text, so they are read as categorical."""
    out = []
    for r in readings.values():
        if r.looks_numeric_but_text():
            sample = ", ".join(f"{t!r} x{n}" for t, n in r.other_text.items())
            out.append(
                f"column {r.name!r} is {r.numeric_share:.1%} numbers but also holds {sample}: read as categorical"
            )
    return out
