"""The user's own workloads: an entry point returning a Workload, or a CSV/Parquet table.

`workload.name = "entry"` with `workload.entry = "mypkg.mymodule:make_workload"`: the function is
called with the resolved config and must return a `trainwise.workloads.base.Workload`.

`workload.name = "file"` with `workload.path = "data.csv"` and `workload.target = "label"`: an MLP
classifier on the table; column types are inferred (numbers are numeric, everything else
categorical) and can be overridden with `workload.column_types = ["zip:categorical"]`. Missing-value
markers in numeric columns ('?', 'NA', '-', empty cells) are read as missing and imputed by the
preprocessing (training median plus a missing-indicator feature); a warning names each column,
token and count. A target that looks continuous is refused (`columns.looks_continuous`).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pandas as pd

from trainwise.errors import ConfigError, DataError
from trainwise.workloads.base import Split, Workload, check_builder_trusted, register_workload
from trainwise.workloads.columns import (
    ColumnReading,
    infinite_columns,
    looks_continuous,
    parse_column_types,
    reading_warnings,
    type_table,
)
from trainwise.workloads.tabular import table_workload


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
        where = (
            f" (looked in the current folder {os.getcwd()} and the installed packages)"
            if _is_the_missing_module(e, module_name)
            else ""
        )
        raise ConfigError(
            f"workload.entry = {entry!r}: cannot import module {module_name!r}: {type(e).__name__}: {e}{where}"
        ) from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"workload.entry = {entry!r}: module {module_name!r} has no function {func_name!r}")
    return fn


def _is_the_missing_module(e: Exception, module_name: str) -> bool:
    """True when the module itself (not one it imports) was not found."""
    name = getattr(e, "name", None) if isinstance(e, ModuleNotFoundError) else None
    return bool(name) and (module_name == name or module_name.startswith(name + "."))


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
    check_builder_trusted(
        result.spec["builder"], cfg.workload.entry, f"workload.entry = {cfg.workload.entry!r}: Workload.spec"
    )
    return result


def read_table(path: str | Path, column_types: list[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet file and type its columns as the file workload does (`columns.type_table`:
    missing-value markers in numeric columns become NaN; pass the run's workload.column_types to
    read them as it did), with an error that names the file and the problem."""
    return load_table(path, column_types)[0]


def load_table(path: str | Path, column_types: list[str] = ()) -> tuple[pd.DataFrame, dict[str, ColumnReading]]:
    """(typed frame, how each column was read); `column_types` ('col:type') overrides the inference."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist (expected a CSV or Parquet file)")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        elif suffix in (".csv", ".txt", ".tsv"):
            # keep_default_na=False: every cell stays text, so the missing-value markers can be named
            frame = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)
        else:
            raise DataError(f"data file {p}: unknown extension {p.suffix!r}; expected .csv, .tsv or .parquet")
    except DataError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types for malformed files
        raise DataError(f"data file {p} could not be read as a table: {type(e).__name__}: {e}") from None
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"data file {p} has no rows or no columns")
    forced = parse_column_types(list(column_types), frame.columns)
    return type_table(frame, forced, from_text=suffix not in (".parquet", ".pq"))


def infer_column_types(readings: dict[str, ColumnReading], target: str) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns, in file order, from `load_table`'s readings."""
    numeric = [c for c, r in readings.items() if c != target and r.kind == "numeric"]
    categorical = [c for c, r in readings.items() if c != target and r.kind == "categorical"]
    return numeric, categorical


def warn(message: str) -> None:
    """A warning line on stderr, once per job (rank 0 only under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"warning: {message}", file=sys.stderr)


def check_target(frame: pd.DataFrame, readings: dict[str, ColumnReading], path: str, target: str, forced: bool) -> None:
    """The target must be present, complete, and look like classes (`columns.looks_continuous`)."""
    if target not in frame.columns:
        raise DataError(
            f"data file {path}: target column {target!r} is absent (columns: {', '.join(map(str, frame.columns))})"
        )
    r = readings[target]
    if frame[target].isna().any():
        how = f" ({r.describe_tokens()})" if r.missing_tokens else ""
        raise DataError(
            f"data file {path}: target column {target!r} has {int(frame[target].isna().sum())} missing values{how}; "
            "drop those rows or fill them"
        )
    why = looks_continuous(frame[target]) if r.kind == "numeric" and not forced else None
    if why:
        raise DataError(
            f"data file {path}: target column {target!r} looks continuous ({why}); a classifier needs classes. Bin it "
            f"first (e.g. pandas.qcut(df[{target!r}], 4, labels=False)) or choose another target; regression is not "
            "supported yet (to train on these values as classes anyway: workload.column_types = "
            f"['{target}:categorical'])"
        )


@register_workload("file")
def file_workload(cfg) -> Workload:
    w = cfg.workload
    frame, readings = load_table(w.path, w.column_types)
    check_target(frame, readings, w.path, w.target, forced=f"{w.target}:categorical" in w.column_types)
    numeric, categorical = infer_column_types(readings, w.target)
    infinite = infinite_columns(frame, numeric)
    if infinite:
        raise DataError(
            f"data file {w.path}: numeric columns {', '.join(infinite)} hold infinite values; expected finite numbers"
        )
    empty = [c for c in numeric if frame[c].isna().all()]
    if empty:
        raise DataError(f"data file {w.path}: numeric columns {', '.join(empty)} have no values at all; drop them")
    for line in reading_warnings(f"data file {w.path}", readings, skip=(w.target,)):
        warn(line)
    # missing numbers are imputed by the preprocessing (training median + indicator, tabular.py);
    # missing categories are one category of their own
    frame = frame.copy()
    for c in categorical:
        frame[c] = frame[c].fillna("<missing>")
    slices = [c for c in categorical if frame[c].nunique() <= 50]
    return table_workload(cfg, frame, w.target, numeric, categorical, "file", slices)
