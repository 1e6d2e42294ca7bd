"""`trainwise data check CONFIG|FILE`: data-quality findings before training, and for CI.

A FILE (CSV/Parquet table) is read as `trainwise train` reads it (missing-value markers such as
'?' or 'NA' in numeric columns are missing cells, reported with their tokens; a column that is
mostly numbers but holds text is a schema finding), then checked for schema, missing values, class imbalance (with
--target), duplicate and near-duplicate rows, label issues (cleanlab, with --target), columns that
look like personal data, and, with --against OTHER (the test or serving table), leakage of OTHER's
rows into FILE and schema differences. A CONFIG (TOML recipe) builds the workload and checks its
train/val/test splits the same way (leakage = val/test rows also in train).

Every finding has `found` (its default verdict) and `value` (a number: rows, a share or a ratio);
`--fail-on leakage,label_issues>0.05` fails the command when a named finding is found, or when its
value exceeds the given threshold. A `--fail-on` check that cannot run on this input (leakage of a
FILE without --against, label checks without --target, personal data in a workload of tensors) is
an error, exit code 2: a check that was asked for never passes by not running.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from trainwise.config import load_config
from trainwise.errors import DataError, TrainwiseError
from trainwise.evaluate import tablechecks as tc
from trainwise.evaluate.labelissues import find_label_issues
from trainwise.evaluate.pii import find_pii
from trainwise.workloads.base import fingerprint_split, get_workload_fn
from trainwise.workloads.user import load_table, read_table

FINDINGS = ("schema", "missing", "imbalance", "duplicates", "leakage", "label_issues", "pii")
FILE_NEEDS = {"leakage": "--against OTHER", "imbalance": "--target COLUMN", "label_issues": "--target COLUMN"}
LABEL_ISSUE_SHARE = 0.01  # a few flagged labels are normal in real data; report above 1%


def parse_fail_on(text: str | list[str] | None) -> list[tuple[str, float | None]]:
    """'leakage,label_issues>0.05' -> [('leakage', None), ('label_issues', 0.05)]."""
    items = text.split(",") if isinstance(text, str) else list(text or [])
    rules = []
    for item in (i.strip() for i in items if i.strip()):
        name, _, threshold = item.partition(">")
        name = name.strip()
        if name not in FINDINGS:
            raise TrainwiseError(
                f"--fail-on {item!r}: unknown finding {name!r} (valid: {', '.join(FINDINGS)}; optionally NAME>NUMBER)"
            )
        try:
            rules.append((name, float(threshold) if threshold else None))
        except ValueError:
            raise TrainwiseError(f"--fail-on {item!r}: {threshold!r} is not a number") from None
    return rules


def table_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of a table's content: column names, dtypes and every row's values (not the file bytes)."""
    h = hashlib.sha256(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def check_table(
    frame: pd.DataFrame,
    target: str | None,
    other: pd.DataFrame | None = None,
    seed: int = 0,
    readings: dict | None = None,
) -> dict:
    """`readings` (from `workloads.user.load_table`) adds the missing-value markers per numeric
    column and the columns that look numeric but hold text."""
    if target is not None and target not in frame.columns:
        raise DataError(
            f"--target {target!r} is not a column of the table (columns: {', '.join(map(str, frame.columns))})"
        )
    features = frame.drop(columns=[target]) if target else frame
    f: dict = {"schema": {**tc.schema(frame), "mismatches": [], "suspect_columns": tc.suspect_columns(readings or {})}}
    if other is not None:
        f["schema"]["mismatches"] = tc.schema_mismatch(frame, other)
    f["schema"]["value"] = len(f["schema"]["mismatches"]) + len(f["schema"]["suspect_columns"])
    f["missing"] = {**tc.missing_values(frame), "markers": tc.missing_markers(readings or {})}
    f["duplicates"] = tc.duplicates(features)
    if other is not None:
        common = [c for c in features.columns if c in other.columns]
        f["leakage"] = tc.leakage(features[common], other[common])
    else:
        f["leakage"] = {"skipped": "needs --against OTHER (the test or serving table)"}
    if target:
        f["imbalance"] = tc.class_balance(frame[target])
        labels_ok = frame[target].notna().to_numpy()
        issues = find_label_issues(
            features[labels_ok].reset_index(drop=True), frame[target][labels_ok].astype(str).to_numpy(), seed
        )
        f["label_issues"] = {**issues, "value": issues["share"]}
    else:
        f["imbalance"] = f["label_issues"] = {"skipped": "needs --target COLUMN"}
    pii = find_pii(frame)
    f["pii"] = {"columns": pii, "value": len(pii)}
    return f


def check_workload(cfg, seed: int = 0) -> tuple[dict, dict]:
    w = get_workload_fn(cfg.workload.name)(cfg)
    splits = {"train": w.train, "val": w.val, "test": w.test}
    fingerprints = {k: fingerprint_split(s) for k, s in splits.items()}
    rows = {k: tc.tensor_rows(s.inputs) for k, s in splits.items()}
    f: dict = {
        "schema": {
            k: {"inputs": list(s.inputs.shape), "dtype": str(s.inputs.dtype), "targets": list(s.targets.shape)}
            for k, s in splits.items()
        }
    }
    f["schema"]["value"] = 0
    nonfinite = sum(int((~np.isfinite(r.to_numpy(dtype=np.float64))).sum()) for r in rows.values())
    f["missing"] = {"cells": nonfinite, "value": nonfinite / max(sum(r.size for r in rows.values()), 1)}
    f["duplicates"] = tc.duplicates(rows["train"])
    leaks = {k: tc.leakage(rows["train"], rows[k]) for k in ("val", "test")}
    f["leakage"] = {"by_split": leaks, "value": sum(v["value"] for v in leaks.values())}
    if w.task == "classification":
        y = w.train.targets.numpy()
        f["imbalance"] = tc.class_balance(pd.Series(y))
        issues = find_label_issues(rows["train"].to_numpy(), y, seed)
        f["label_issues"] = {**issues, "value": issues["share"]}
    else:
        f["imbalance"] = f["label_issues"] = {"skipped": f"not applicable to task {w.task!r}"}
    if cfg.workload.name == "file":  # the raw table: its missing cells were imputed before the tensors
        table, readings = load_table(cfg.workload.path, cfg.workload.column_types)
        f["missing"] = {**tc.missing_values(table), "markers": tc.missing_markers(readings)}
        f["schema"]["suspect_columns"] = tc.suspect_columns(readings)
        f["schema"]["value"] = len(f["schema"]["suspect_columns"])
        pii = find_pii(table)
        f["pii"] = {"columns": pii, "value": len(pii)}
    else:
        f["pii"] = {"skipped": f"workload {cfg.workload.name!r} holds tensors, not raw columns"}
    return f, fingerprints


def mark_found(findings: dict) -> None:
    defaults = {
        "schema": 0,
        "missing": 0,
        "duplicates": 0,
        "leakage": 0,
        "pii": 0,
        "label_issues": LABEL_ISSUE_SHARE,
        "imbalance": tc.IMBALANCE_RATIO,
    }
    for name, f in findings.items():
        f["found"] = "skipped" not in f and f["value"] > defaults[name]


def check_data(
    source: str | Path,
    against: str | Path | None = None,
    target: str | None = None,
    fail_on=(),
    overrides=(),
    seed: int = 0,
) -> dict:
    """Run every check on a CONFIG (.toml) or a FILE (CSV/Parquet); returns the JSON report."""
    rules = parse_fail_on(fail_on)
    source = Path(source)
    if source.suffix.lower() != ".toml":  # refused before any file is read
        given = {"--against OTHER": against is not None, "--target COLUMN": target is not None}
        for name, _ in rules:
            if name in FILE_NEEDS and not given[FILE_NEEDS[name]]:
                raise TrainwiseError(
                    f"--fail-on {name}: the {name} check of a FILE needs {FILE_NEEDS[name]}; without it the check "
                    "cannot run"
                )
    if source.suffix.lower() == ".toml":
        if against is not None:
            raise TrainwiseError(
                "--against applies to a FILE; a CONFIG's val and test splits are already checked against its train "
                "split"
            )
        findings, fingerprints = check_workload(load_config(source, list(overrides)), seed)
        kind = "config"
    else:
        frame, readings = load_table(source)
        other = read_table(against) if against is not None else None
        findings = check_table(frame, target, other, seed, readings)
        fingerprints = {"file": table_fingerprint(frame)} | (
            {"against": table_fingerprint(other)} if other is not None else {}
        )
        kind = "file"
    mark_found(findings)
    failed = []
    for name, threshold in rules:
        f = findings[name]
        if "skipped" in f:
            raise TrainwiseError(f"--fail-on {name}: the {name} check cannot run on {source} ({f['skipped']})")
        if (f["value"] > threshold) if threshold is not None else f["found"]:
            failed.append(f"{name} (value {f['value']:g}{'' if threshold is None else f' > {threshold:g}'})")
    return {
        "source": str(source),
        "kind": kind,
        "against": None if against is None else str(against),
        "fingerprints": fingerprints,
        "findings": {k: findings[k] for k in FINDINGS},
        "fail_on": [n if t is None else f"{n}>{t:g}" for n, t in rules],
        "failed": failed,
        "passed": not failed,
    }


def format_report(report: dict) -> str:
    lines = [f"data check of {report['source']}" + (f" against {report['against']}" if report["against"] else "")]
    for name, fp in report["fingerprints"].items():
        lines.append(f"  fingerprint {name}: sha256 {fp}")
    for name, f in report["findings"].items():
        if "skipped" in f:
            lines.append(f"  {name:13s} skipped: {f['skipped']}")
            continue
        lines.append(f"  {name:13s} {'FOUND' if f['found'] else 'ok':5s} {_summary(name, f)}")
    lines.append(
        "FAILED: " + "; ".join(report["failed"])
        if report["failed"]
        else ("passed" if report["fail_on"] else "done (no --fail-on rules)")
    )
    return "\n".join(lines)


def _summary(name: str, f: dict) -> str:
    if name == "schema":
        return "; ".join(f.get("mismatches", []) + f.get("suspect_columns", [])) or "consistent"
    if name == "missing":
        cols = f.get("columns") or {}
        markers = f.get("markers") or {}
        per_col = [f"{c} ({markers.get(c) or n})" for c, n in cols.items()]
        return f"{f['cells']} missing cells" + (f" in {', '.join(per_col)}" if per_col else "")
    if name in ("duplicates", "leakage"):
        exact = f.get("exact", sum(v["exact"] for v in f.get("by_split", {}).values()))
        near = f.get("near", sum(v["near"] for v in f.get("by_split", {}).values()))
        return f"{exact} exact and {near} near-duplicate rows"
    if name == "imbalance":
        return f"majority/minority {f['majority_to_minority']:.1f} ({f['counts']})"
    if name == "label_issues":
        return f"{f['count']} of {f['checked']} labels look wrong ({f['share']:.1%})"
    return (
        ", ".join(f"{c} ({v['pattern']}, {v['share']:.0%})" for c, v in f["columns"].items())
        or "no personal-data patterns"
    )
