"""Benchmark: compute_metrics on 1,000,000 predictions over 10 classes, and equality with scikit-learn.

Target (issue 7): <= 10 s on the 2-core CPU, numbers equal to scikit-learn's.

    /work/main/.venv/bin/python benchmarks/metrics_speed.py [--n 1000000] [--repeats 5] \\
        [--out benchmarks/metrics_speed_cpu-2core_20261122]

Times the whole `compute_metrics` call (no slices: the headline metrics, calibration and the
confusion matrix) `--repeats` times and reports the median with min and max, the same metrics by
direct scikit-learn calls in the same run (for the ratio), the largest absolute difference from
scikit-learn over every metric, and, separately, the cost of one 10-value slice column with 200
bootstrap replicates. The machine's load average is recorded: the 2 cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainwise.evaluate.metrics import compute_metrics  # noqa: E402


def make_frame(n: int, k: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 2.0
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    classes = [f"class{i}" for i in range(k)]
    df = pd.DataFrame(p, columns=[f"prob_{c}" for c in classes])
    df.insert(0, "label", np.asarray(classes)[y])
    df.insert(0, "id", np.arange(n))
    df["region"] = rng.choice([f"r{i}" for i in range(10)], n)
    return df


def sklearn_reference(y: np.ndarray, p: np.ndarray) -> dict:
    k = p.shape[1]
    pred, labels = p.argmax(1), np.arange(k)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(y, pred, labels=labels, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0),
        "f1_micro": skm.f1_score(y, pred, labels=labels, average="micro", zero_division=0),
        "roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", labels=labels),
        "log_loss": skm.log_loss(y, p, labels=labels),
        "brier": skm.brier_score_loss(y, p, labels=labels),
    }


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/metrics_speed_cpu-2core_20261122")
    args = ap.parse_args()

    df = make_frame(args.n, args.classes)
    y = df["label"].str.removeprefix("class").astype(int).to_numpy()
    p = df[[c for c in df.columns if c.startswith("prob_")]].to_numpy()
    load_before = os.getloadavg()
    ours_s, m = timed(lambda: compute_metrics(df, "classification"), args.repeats)
    sk_s, ref = timed(lambda: sklearn_reference(y, p), args.repeats)
    diffs = {k: abs(m[k] - v) for k, v in ref.items()}
    cm_equal = m["confusion_matrix"] == skm.confusion_matrix(y, p.argmax(1)).tolist()
    slice_s, ms = timed(lambda: compute_metrics(df, "classification", slices=["region"], n_boot=200), 1)
    result = {
        "what": f"compute_metrics on {args.n:,} predictions x {args.classes} classes",
        "machine": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), load average before "
            f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
        ),
        "repeats": args.repeats,
        "compute_metrics_s": {
            "median": statistics.median(ours_s),
            "min": min(ours_s),
            "max": max(ours_s),
            "all": ours_s,
        },
        "sklearn_direct_calls_s": {"median": statistics.median(sk_s), "min": min(sk_s), "max": max(sk_s)},
        "ratio_ours_to_sklearn_calls": statistics.median(ours_s) / statistics.median(sk_s),
        "max_abs_diff_from_sklearn": max(diffs.values()),
        "abs_diff_by_metric": diffs,
        "confusion_matrix_equal": cm_equal,
        "with_one_slice_column_10_values_200_bootstrap_s": slice_s[0],
        "target_s": 10.0,
        "meets_target": statistics.median(ours_s) <= 10.0 and max(diffs.values()) < 1e-9 and cm_equal,
        "metrics": {k: m[k] for k in ("accuracy", "f1_macro", "roc_auc", "log_loss", "brier", "ece")},
    }
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    c, s = result["compute_metrics_s"], result["sklearn_direct_calls_s"]
    md = f"""# compute_metrics speed and equality with scikit-learn ({result["what"]})

Command: `/work/main/.venv/bin/python benchmarks/metrics_speed.py --n {args.n} --repeats {args.repeats}`

Machine: {result["machine"]}.

| measurement | median | min | max |
|---|---|---|---|
| `compute_metrics` (all headline metrics, ECE variants, confusion matrix) | {c["median"]:.2f} s | \
{c["min"]:.2f} s | {c["max"]:.2f} s |
| the sklearn-only subset by direct sklearn calls (same run) | {s["median"]:.2f} s | {s["min"]:.2f} s | \
{s["max"]:.2f} s |
| `compute_metrics` + one 10-value slice column, 200 bootstrap replicates (1 run) | {slice_s[0]:.2f} s | | |

Ratio compute_metrics / sklearn calls: {result["ratio_ours_to_sklearn_calls"]:.2f}. compute_metrics does more \
(calibration metrics, the Wilson
interval, per-class tables) but takes the AUC from scipy's Mann-Whitney U instead of sklearn's ROC curve, which is \
faster.
The 2 cores were shared with other jobs during the run (see the load average above).

Largest absolute difference from scikit-learn over accuracy, balanced accuracy, macro precision/recall/F1,
micro F1, one-vs-rest AUC, log loss and Brier score: {result["max_abs_diff_from_sklearn"]:.1e}; confusion matrix \
equal: {cm_equal}.

Target: <= 10 s and equal to scikit-learn: {"met" if result["meets_target"] else "NOT met"}.
"""
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
