"""The user's own workloads: an entry point returning a Workload, or a CSV/Parquet table.

`workload.name = "entry"` with `workload.entry = "mypkg.mymodule:make_workload"`: the function is
called with the resolved config and must return a `trainwise.workloads.base.Workload`.

`workload.name = "file"` with `workload.path = "data.csv"` and `workload.target = "label"`: an MLP
classifier on the table; column types are inferred (numbers are numeric, everything else
categorical) and can be overridden with `workload.column_types = ["zip:categorical"]`.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pandas as pd

from trainwise.errors import ConfigError, DataError
from trainwise.workloads.base import Split, Workload, check_builder_trusted, register_workload
from trainwise.workloads.tabular import table_workload

COLUMN_TYPES = ("numeric", "categorical")


def import_entry(entry: str):
    """Import 'package.module:function' and return the function, or raise a clear error."""
    if entry.count(":") != 1:
        raise ConfigError(f"workload.entry = {entry!r}: expected 'package.module:function'")
    module_name, func_name = entry.split(":")
    # The current directory, as `python -m` puts it first: the README's `mypkg/workload.py` next to
    # where the user runs `trainwise` imports without installing it or setting PYTHONPATH.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or an error raised while importing the user's module
        raise ConfigError(f"workload.entry = {entry!r}: cannot import module {module_name!r}: {type(e).__name__}: {e}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"workload.entry = {entry!r}: module {module_name!r} has no function {func_name!r}")
    return fn


@register_workload("entry")
def entry_workload(cfg) -> Workload:
    fn = import_entry(cfg.workload.entry)
    result = fn(cfg)
    if not isinstance(result, Workload):
        raise ConfigError(
            f"workload.entry = {cfg.workload.entry!r} returned {type(result).__name__}; expected a "
            "trainwise.workloads.base.Workload(name, task, model, train, val, test, spec)"
        )
    for split in ("train", "val", "test"):
        if not isinstance(getattr(result, split), Split) or len(getattr(result, split)) == 0:
            raise ConfigError(f"workload.entry = {cfg.workload.entry!r}: Workload.{split} must be a non-empty Split")
    result.spec.setdefault("builder", cfg.workload.entry)
    # Checked now, not first when the saved model is loaded: a builder that loading would refuse
    # (outside the entry point's package) is reported before training, with the setting that allows it.
    check_builder_trusted(result.spec["builder"], cfg.workload.entry, f"workload.entry = {cfg.workload.entry!r}: Workload.spec")
    return result


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, with an error that names the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist (expected a CSV or Parquet file)")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        elif p.suffix.lower() in (".csv", ".txt", ".tsv"):
            frame = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",")
        else:
            raise DataError(f"data file {p}: unknown extension {p.suffix!r}; expected .csv, .tsv or .parquet")
    except DataError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types for malformed files
        raise DataError(f"data file {p} could not be read as a table: {type(e).__name__}: {e}") from None
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"data file {p} has no rows or no columns")
    return frame


def infer_column_types(frame: pd.DataFrame, target: str, overrides: list[str]) -> tuple[list[str], list[str]]:
    """Numeric columns are numeric; everything else categorical; `overrides` ('col:type') win."""
    forced = {}
    for item in overrides:
        if item.count(":") != 1 or item.split(":")[1] not in COLUMN_TYPES:
            raise ConfigError(f"workload.column_types item {item!r}: expected 'column:numeric' or 'column:categorical'")
        col, kind = item.split(":")
        if col not in frame.columns:
            raise ConfigError(f"workload.column_types names column {col!r}, which the file lacks (columns: {', '.join(map(str, frame.columns))})")
        forced[col] = kind
    numeric, categorical = [], []
    for col in frame.columns:
        if col == target:
            continue
        kind = forced.get(col) or ("numeric" if pd.api.types.is_numeric_dtype(frame[col]) else "categorical")
        (numeric if kind == "numeric" else categorical).append(col)
    return numeric, categorical


@register_workload("file")
def file_workload(cfg) -> Workload:
    w = cfg.workload
    frame = read_table(w.path)
    if w.target not in frame.columns:
        raise DataError(f"data file {w.path}: target column {w.target!r} is absent (columns: {', '.join(map(str, frame.columns))})")
    if frame[w.target].isna().any():
        raise DataError(f"data file {w.path}: target column {w.target!r} has {int(frame[w.target].isna().sum())} missing values")
    numeric, categorical = infer_column_types(frame, w.target, w.column_types)
    # a numeric column with missing values is imputed by nobody: say so instead of training on NaN
    bad = [c for c in numeric if frame[c].isna().any()]
    if bad:
        raise DataError(f"data file {w.path}: numeric columns {', '.join(bad)} have missing values; fill them or mark them categorical")
    frame = frame.copy()
    for c in categorical:
        frame[c] = frame[c].fillna("<missing>")
    slices = [c for c in categorical if frame[c].nunique() <= 50]
    return table_workload(cfg, frame, w.target, numeric, categorical, "file", slices)
