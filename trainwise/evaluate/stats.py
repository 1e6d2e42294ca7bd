"""Paired tests on the same examples: McNemar's exact test and DeLong's test for two AUCs.

DeLong, DeLong & Clarke-Pearson 1988 ("Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach", Biometrics 44:837) estimate the
covariance of correlated AUCs from per-example "structural components". Sun & Xu 2014 ("Fast
implementation of DeLong's algorithm", IEEE Signal Processing Letters 21:1389) compute those
components from midranks in O(n log n) instead of DeLong's O(m n) pairwise comparisons; that is
what `delong` does. tests/evaluate/test_stats.py checks it against the O(m n) definition, against
Hanley & McNeil's 1982 worked example and against a paired bootstrap.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar


def midrank_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the structural components V10 (one per positive), V01 (one per negative).

    Sun & Xu 2014, eqs. (6)-(8): with midranks Tz over all scores, Tx within positives and Ty
    within negatives, V10_i = (Tz_i - Tx_i) / n and V01_j = 1 - (Tz_j - Ty_j) / m.
    """
    m, n = len(pos), len(neg)
    tz = stats.rankdata(np.concatenate([pos, neg]))  # midranks (ties averaged)
    tx, ty = stats.rankdata(pos), stats.rankdata(neg)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    return float(auc), v10, v01


def delong(label: np.ndarray, score_a: np.ndarray, score_b: np.ndarray | None = None) -> dict:
    """DeLong's variance of one AUC, or test of AUC_b - AUC_a for two scores on the same examples.

    label: (n,) booleans (positive class); scores: (n,) higher means more positive.
    Returns auc_a, se_a (and auc_b, se_b, delta, se_delta, z, p_value for two scores).
    """
    label = np.asarray(label, dtype=bool)
    if label.all() or not label.any():
        raise ValueError("DeLong's test needs both positive and negative examples")
    scores = [np.asarray(score_a, np.float64)] + ([np.asarray(score_b, np.float64)] if score_b is not None else [])
    m, n = int(label.sum()), int((~label).sum())
    parts = [midrank_components(s[label], s[~label]) for s in scores]
    aucs = np.array([p[0] for p in parts])
    s10 = np.atleast_2d(np.cov(np.stack([p[1] for p in parts])))  # (k, k) covariance over positives
    s01 = np.atleast_2d(np.cov(np.stack([p[2] for p in parts])))
    cov = s10 / m + s01 / n
    out = {"auc_a": float(aucs[0]), "se_a": float(np.sqrt(cov[0, 0]))}
    if score_b is None:
        return out
    var_delta = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    delta = float(aucs[1] - aucs[0])
    se = float(np.sqrt(max(var_delta, 0.0)))
    z = delta / se if se > 0 else 0.0
    out.update(
        {
            "auc_b": float(aucs[1]),
            "se_b": float(np.sqrt(cov[1, 1])),
            "delta": delta,
            "se_delta": se,
            "z": float(z),
            "p_value": float(2 * stats.norm.sf(abs(z))) if se > 0 else 1.0,
        }
    )
    return out


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact (binomial) test on paired correctness, via statsmodels.

    The 2x2 table counts examples by (a right?, b right?); only the discordant cells matter.
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    res = mcnemar(table, exact=True)
    return {
        "table": table.tolist(),
        "a_only_correct": int(table[0, 1]),
        "b_only_correct": int(table[1, 0]),
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
    }
