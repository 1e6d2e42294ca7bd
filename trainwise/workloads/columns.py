"""How a user's table becomes typed columns: missing-value markers, numeric or categorical, the target.

Public CSVs mark a missing number in many ways: `?` (the UCI repository's convention), `NA`,
`n/a`, `-`, `null`, an empty or blank cell. A column whose every cell is either a number or such a
marker is numeric, and its markers are missing values; each is reported (column, token, count)
rather than silently turning the column into hundreds of one-hot categories. A column that is
mostly numbers but holds other text stays categorical, with a warning that says how to force it.

The target of a classifier must look like classes: a numeric target with many distinct values is
refused when the values are not whole numbers or when there are too few rows per class (the
rule: `looks_continuous`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trainwise.errors import ConfigError

COLUMN_TYPES = ("numeric", "categorical")

# Cells that mean "no value" in a numeric column (compared stripped and lower-cased). Any cell made
# only of punctuation ('?', '--', '*', '.') counts as well.
MISSING_TOKENS = frozenset(
    {"", "na", "n/a", "n.a.", "nan", "null", "none", "nil", "missing", "unknown", "#n/a", "<na>"}
)

# pandas' default `na_values` for read_csv: categorical columns keep reading these as missing
# ('<missing>' category), as they did before the table was read with keep_default_na=False.
PANDAS_NA_TOKENS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)

NULL_TOKEN = "<null>"  # a cell that holds no value at all (Parquet null), not a text marker

MOSTLY_NUMERIC_SHARE = 0.9  # a text column with at least this share of numbers is probably a numeric one

# A numeric target with more distinct values than this is refused as continuous when its values
# are not whole numbers, or when it has fewer than MIN_ROWS_PER_CLASS rows per class on average.
MAX_NUMERIC_CLASSES = 20
MIN_ROWS_PER_CLASS = 10


def is_missing_token(text: str) -> bool:
    """'?', 'NA', ' n/a ', '-', '' -> True; '12', 'abc' -> False.

    >>> [is_missing_token(t) for t in ("?", " NA ", "--", "", "12", "abc")]
    [True, True, True, True, False, False]
    """
    t = text.strip().lower()
    return t in MISSING_TOKENS or all(ch in string.punctuation for ch in t)


@dataclass
class ColumnReading:
    """How one column was read: its kind, and which cells were read as missing and why."""

    name: str
    kind: str  # numeric | categorical
    missing_tokens: dict[str, int] = field(
        default_factory=dict
    )  # raw cell text -> count (NULL_TOKEN: null cells, as in Parquet)
    numeric_share: float = 1.0  # share of non-missing cells that are numbers
    other_text: dict[str, int] = field(default_factory=dict)  # a mostly-numeric categorical column: its non-numbers

    @property
    def n_missing(self) -> int:
        return sum(self.missing_tokens.values())

    def describe_tokens(self) -> str:
        """The tokens as text, e.g. `'?' x7, '' (empty) x2`."""
        return ", ".join(
            f"{'null' if t == NULL_TOKEN else repr(t)}{' (empty)' if not t.strip() else ''} x{n}"
            for t, n in self.missing_tokens.items()
        )

    def looks_numeric_but_text(self) -> bool:
        return self.kind == "categorical" and bool(self.other_text) and self.numeric_share >= MOSTLY_NUMERIC_SHARE


def read_column(
    values: pd.Series, forced: str | None = None, from_text: bool = True
) -> tuple[pd.Series, ColumnReading]:
    """Type one column: (values as the workload will see them, how they were read).

    Numeric columns come back as numbers (float64 with NaN where cells were missing markers).
    `from_text` says the cells were read from CSV text with keep_default_na=False, so pandas' NA
    tokens are still strings.
    """
    name = str(values.name)
    nulls = int(values.isna().sum())
    null_tokens = {NULL_TOKEN: nulls} if nulls else {}
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        if forced == "categorical":
            return values, ColumnReading(name, "categorical")
        return values, ColumnReading(name, "numeric", null_tokens)
    present = values.notna()
    raw = values[present].astype(str)
    numbers = pd.to_numeric(raw.str.strip(), errors="coerce")
    is_number = numbers.notna()
    others = raw[~is_number]
    markers = others.map(is_missing_token).astype(bool)
    n_real = int(is_number.sum()) + int((~markers).sum())
    share = float(is_number.sum()) / n_real if n_real else 0.0
    if forced == "numeric" or (forced is None and is_number.any() and markers.all()):
        out = np.full(len(values), np.nan)  # positions, not labels: an index may repeat labels
        out[np.flatnonzero(present.to_numpy())[is_number.to_numpy()]] = numbers[is_number].to_numpy(dtype=np.float64)
        out = pd.Series(out, index=values.index, name=values.name)
        tokens = {str(k): int(v) for k, v in others.value_counts().items()} | null_tokens
        return out, ColumnReading(name, "numeric", tokens, share)
    if from_text:  # as a plain read_csv would: 'NA', '' and friends are missing ('<missing>' later)
        values = values.where(~values.isin(PANDAS_NA_TOKENS), None)
    other_text = {str(k): int(v) for k, v in others[~markers].value_counts().head(5).items()}
    return values, ColumnReading(name, "categorical", {}, share, other_text)


def parse_column_types(items: list[str], columns) -> dict[str, str]:
    """workload.column_types ['zip:categorical', 'age:numeric'] -> {'zip': 'categorical', ...}, checked."""
    forced = {}
    for item in items:
        if item.count(":") != 1 or item.split(":")[1] not in COLUMN_TYPES:
            raise ConfigError(f"workload.column_types item {item!r}: expected 'column:numeric' or 'column:categorical'")
        col, kind = item.split(":")
        if col not in columns:
            raise ConfigError(
                f"workload.column_types names column {col!r}, which the file lacks (columns: "
                f"{', '.join(map(str, columns))})"
            )
        forced[col] = kind
    return forced


def type_table(
    frame: pd.DataFrame, forced: dict[str, str] | None = None, from_text: bool = True
) -> tuple[pd.DataFrame, dict[str, ColumnReading]]:
    """Every column typed by `read_column`; returns the typed frame and each column's reading."""
    forced = forced or {}
    columns, readings = {}, {}
    for col in frame.columns:
        columns[col], readings[col] = read_column(frame[col], forced.get(col), from_text)
    return pd.DataFrame(columns, index=frame.index), readings


def reading_warnings(source: str, readings: dict[str, ColumnReading], skip: tuple[str, ...] = ()) -> list[str]:
    """One line per column whose reading the user should know about."""
    lines = []
    for r in readings.values():
        if r.name in skip:
            continue
        if r.kind == "numeric" and r.missing_tokens:
            lines.append(
                f"{source}: numeric column {r.name!r}: {r.n_missing} cells read as missing ({r.describe_tokens()}); "
                f"filled with the training median, with a missing-indicator feature '{r.name}=<missing>'"
            )
        elif r.looks_numeric_but_text():
            sample = ", ".join(f"{t!r} x{n}" for t, n in r.other_text.items())
            lines.append(
                f"{source}: column {r.name!r} is {r.numeric_share:.1%} numbers but also holds text ({sample}), so it "
                f"is read as categorical; if it is numeric, set workload.column_types = ['{r.name}:numeric'] (those "
                "cells are then read as missing)"
            )
    return lines


def infinite_columns(frame: pd.DataFrame, numeric: list[str]) -> list[str]:
    """Numeric columns holding +-inf (pandas reads 'inf' as a number): scaling would turn them into NaN."""
    return [
        c
        for c in numeric
        if np.isinf(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)).any()
    ]


def looks_continuous(values: pd.Series) -> str | None:
    """Why a numeric classification target looks continuous, or None when it looks like classes.

    The rule: more than MAX_NUMERIC_CLASSES distinct values, and either some value is not a whole
    number or there are fewer than MIN_ROWS_PER_CLASS rows per class on average.

    >>> looks_continuous(pd.Series(np.linspace(0, 1, 500))) is not None
    True
    >>> looks_continuous(pd.Series([0, 1, 2] * 100)) is None
    True
    """
    v = values.dropna().to_numpy(dtype=np.float64)
    distinct = len(np.unique(v))
    if distinct <= MAX_NUMERIC_CLASSES:
        return None
    fractional = v[v != np.round(v)]
    rows_per_class = len(v) / distinct
    if len(fractional):
        return f"{distinct} distinct numbers in {len(v)} rows, not whole numbers (e.g. {fractional[0]:g})"
    if rows_per_class < MIN_ROWS_PER_CLASS:
        return (
            f"{distinct} distinct whole numbers in {len(v)} rows, {rows_per_class:.1f} rows per class on average (at "
            f"least {MIN_ROWS_PER_CLASS} needed)"
        )
    return None
