"""metrics.json: classification and lm metrics of a predictions frame, overall and per slice.

Point estimates over the whole set come from scikit-learn itself (the AUC from scipy's
Mann-Whitney U, which equals sklearn's and is faster). Per-slice metrics and their
bootstrap confidence intervals come from `resample.ClassificationStats`, whose point estimates
equal scikit-learn's (tested), because calling sklearn once per bootstrap replicate is too slow.
Slices smaller than `min_slice_count` are kept and flagged `small`, never hidden.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.proportion import proportion_confint

from trainwise.errors import DataError
from trainwise.evaluate.calibration import calibration_metrics
from trainwise.evaluate.resample import ClassificationStats, LMStats, bootstrap_counts, percentile_ci

PROB_PREFIX = "prob_"
LM_COLUMNS = ("id", "loss", "correct")
AUC_BOOTSTRAP_BINS = 256


def class_names(pred_df: pd.DataFrame) -> list[str]:
    """Class names from the prob_<class> columns, in column order."""
    names = [c[len(PROB_PREFIX) :] for c in pred_df.columns if str(c).startswith(PROB_PREFIX)]
    if len(names) < 2:
        raise DataError(
            f"predictions have {len(names)} prob_<class> columns; a classification frame needs one per class (columns: "
            f"{', '.join(map(str, pred_df.columns))})"
        )
    return names


def class_arrays(pred_df: pd.DataFrame, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(label ids (n,), probabilities (n, K) float64, class names) of a classification frame."""
    classes = [str(c) for c in (classes or class_names(pred_df))]
    cols = [PROB_PREFIX + c for c in classes]
    missing = [c for c in cols + ["label"] if c not in pred_df.columns]
    if missing:
        raise DataError(
            f"predictions lack the columns {', '.join(missing)} (have: {', '.join(map(str, pred_df.columns))})"
        )
    index = {c: i for i, c in enumerate(classes)}
    label = pred_df["label"].astype(str).map(index)
    if label.isna().any():
        bad = sorted(set(pred_df["label"].astype(str)[label.isna()]))[:5]
        raise DataError(f"predictions: labels {bad} are not among the classes {classes}")
    prob = pred_df[cols].to_numpy(dtype=np.float64)
    return label.to_numpy(dtype=np.int64), prob, classes


def compute_metrics(
    pred_df: pd.DataFrame,
    task: str,
    classes: list[str] | None = None,
    slices=(),
    min_slice_count: int = 30,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """metrics.json content for a predictions frame (see docs/evaluate.md for every field)."""
    missing = [c for c in slices if c not in pred_df.columns]
    if missing:
        raise DataError(
            f"slice column(s) {', '.join(missing)} do not exist in the predictions (columns: "
            f"{', '.join(map(str, pred_df.columns))})"
        )
    if task == "lm":
        out = lm_metrics(pred_df)
        out["slices"] = {
            c: slice_table(pred_df, c, lambda d: lm_point_and_ci(d, n_boot, confidence, seed), min_slice_count)
            for c in slices
        }
        if "group" in pred_df.columns:  # the source-file groups, always reported for lm
            out["groups"] = out["slices"].get("group") or slice_table(
                pred_df, "group", lambda d: lm_point_and_ci(d, n_boot, confidence, seed), min_slice_count
            )
        return out
    label, prob, classes = class_arrays(pred_df, classes)
    out = classification_metrics(label, prob, classes)
    out["slices"] = {
        c: slice_table(
            pred_df, c, lambda d: classification_point_and_ci(d, classes, n_boot, confidence, seed), min_slice_count
        )
        for c in slices
    }
    return out


def classification_metrics(label: np.ndarray, prob: np.ndarray, classes: list[str]) -> dict:
    k, n = len(classes), len(label)
    pred = prob.argmax(axis=1)
    labels = np.arange(k)
    p, r, f, support = skm.precision_recall_fscore_support(label, pred, labels=labels, zero_division=0)
    micro = skm.precision_recall_fscore_support(label, pred, labels=labels, average="micro", zero_division=0)
    correct = int((pred == label).sum())
    lo, hi = proportion_confint(correct, n, alpha=0.05, method="wilson")
    out = {
        "task": "classification",
        "n": n,
        "classes": classes,
        "accuracy": skm.accuracy_score(label, pred),
        "accuracy_ci95": [float(lo), float(hi)],  # Wilson score interval
        "balanced_accuracy": skm.balanced_accuracy_score(label, pred),
        "precision_macro": float(p.mean()),
        "recall_macro": float(r.mean()),
        "f1_macro": float(f.mean()),
        "precision_micro": micro[0],
        "recall_micro": micro[1],
        "f1_micro": micro[2],
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "roc_auc": roc_auc(label, prob),
        "log_loss": skm.log_loss(label, prob, labels=labels),
        "brier": skm.brier_score_loss(label, prob, labels=labels),
    }
    out.update(calibration_metrics(prob, label))
    out["confusion_matrix"] = skm.confusion_matrix(label, pred, labels=labels).tolist()
    return {key: (float(v) if isinstance(v, np.floating) else v) for key, v in out.items()}


def roc_auc(label: np.ndarray, prob: np.ndarray) -> float | None:
    """Binary AUC of the second class, or one-vs-rest macro AUC; None when a class is absent.

    AUC = U / (m n), the Mann-Whitney statistic (midranks for ties) from scipy: the same number as
    sklearn's `roc_auc_score` (tested; 0.0 difference in benchmarks/metrics_speed.py) in half the
    time, because sklearn builds the whole ROC curve first.
    """
    k = prob.shape[1]
    if len(np.unique(label)) < k:
        return None  # undefined: some class has no positives
    aucs = []
    for c in [1] if k == 2 else range(k):
        pos = label == c
        u = stats.mannwhitneyu(prob[pos, c], prob[~pos, c], method="asymptotic", use_continuity=False).statistic
        aucs.append(u / (pos.sum() * (~pos).sum()))
    return float(np.mean(aucs))


def classification_point_and_ci(
    df: pd.DataFrame, classes: list[str], n_boot: int, confidence: float, seed: int
) -> tuple[dict, dict]:
    label, prob, _ = class_arrays(df, classes)
    point = {m: _finite(v[0]) for m, v in ClassificationStats().fit(label, prob).metrics().items()}
    # the bootstrap bins scores for the AUC (exact ties would make one statistic per distinct score)
    stats = ClassificationStats(auc_bins=AUC_BOOTSTRAP_BINS).fit(label, prob)
    auc_shift = (point["roc_auc"] or 0.0) - float(stats.metrics()["roc_auc"][0])
    reps: dict[str, list] = {m: [] for m in point}
    for w in bootstrap_counts(len(label), n_boot, seed):
        for m, v in stats.metrics(w).items():
            reps[m].append(v + auc_shift if m == "roc_auc" else v)
    ci = {m: _finite_pair(percentile_ci(np.concatenate(v), confidence)) for m, v in reps.items()}
    return point, ci


def lm_metrics(pred_df: pd.DataFrame) -> dict:
    """Mean per-byte loss (nats), bits per byte and next-byte accuracy, weighted by positions."""
    missing = [c for c in LM_COLUMNS if c not in pred_df.columns]
    if missing:
        raise DataError(
            f"lm predictions lack the columns {', '.join(missing)} (have: {', '.join(map(str, pred_df.columns))})"
        )
    w = pred_df["n_positions"].to_numpy(np.float64) if "n_positions" in pred_df.columns else np.ones(len(pred_df))
    loss = float(np.sum(w * pred_df["loss"].to_numpy(np.float64)) / w.sum())
    acc = float(np.sum(w * pred_df["correct"].to_numpy(np.float64)) / w.sum())
    return {
        "task": "lm",
        "n": len(pred_df),
        "n_positions": int(w.sum()),
        "loss": loss,
        "bits_per_byte": loss / math.log(2),
        "next_byte_accuracy": acc,
    }


def lm_point_and_ci(df: pd.DataFrame, n_boot: int, confidence: float, seed: int) -> tuple[dict, dict]:
    stats = LMStats().fit(df["loss"], df["correct"], df["n_positions"] if "n_positions" in df.columns else None)
    point = {m: _finite(v[0]) for m, v in stats.metrics().items()}
    reps = [stats.metrics(w) for w in bootstrap_counts(len(df), n_boot, seed)]
    ci = {m: _finite_pair(percentile_ci(np.concatenate([r[m] for r in reps]), confidence)) for m in point}
    return point, ci


def slice_table(pred_df: pd.DataFrame, column: str, point_and_ci, min_count: int) -> list[dict]:
    """One entry per slice value: n, small flag, metrics and their bootstrap CIs."""
    rows = []
    for value, part in pred_df.groupby(pred_df[column].astype(str), sort=True):
        point, ci = point_and_ci(part)
        rows.append({"value": value, "n": len(part), "small": len(part) < min_count, "metrics": point, "ci": ci})
    return rows


def _finite(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _finite_pair(p) -> list | None:
    return None if any(not math.isfinite(x) for x in p) else [float(p[0]), float(p[1])]
