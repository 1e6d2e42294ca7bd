"""Multivariate drift: can a classifier tell reference rows from window rows?

A domain classifier (scikit-learn's HistGradientBoostingClassifier, which takes numeric and
categorical columns and missing values as they are) is trained on half of a sample of reference
and window rows and scored on the other half. With no drift the held-out scores are independent
of the held-out domain labels, so permuting those labels gives the exact null distribution of the
held-out AUC (the classifier two-sample test of Lopez-Paz & Oquab, 2017, "Revisiting Classifier
Two-Sample Tests"). It catches changes in the joint distribution that no single column shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

N_PERMUTATIONS = 1000


def encode_frame(frame: pd.DataFrame, profiles: list) -> np.ndarray:
    """Numeric columns as floats, categorical columns as reference category codes (unseen = NaN)."""
    cols = []
    for p in profiles:
        if p.kind == "numeric":
            cols.append(pd.to_numeric(frame[p.name], errors="coerce").to_numpy(dtype=np.float64))
        else:
            codes = pd.Categorical(frame[p.name].astype(str), categories=p.categories_).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            cols.append(codes)
    return np.column_stack(cols) if cols else np.zeros((len(frame), 0))


def auc_from_ranks(ranks: np.ndarray, is_current: np.ndarray) -> np.ndarray:
    """AUC of the scores whose ranks are given, for one label vector or a (P, N) stack of them.

    The Mann-Whitney form: (rank sum of positives - n1 (n1 + 1) / 2) / (n1 n0).
    """
    n1 = is_current.sum(axis=-1)
    n0 = is_current.shape[-1] - n1
    rank_sum = (is_current * ranks).sum(axis=-1)
    return (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)


def domain_classifier_test(ref_x: np.ndarray, cur_x: np.ndarray, categorical_mask: np.ndarray, seed: int) -> dict:
    """Held-out AUC of a reference-vs-window classifier, its permutation p-value and null quantile."""
    # lazy: scikit-learn is heavy and only needed by this test
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    x = np.vstack([ref_x, cur_x])
    y = np.concatenate([np.zeros(len(ref_x), dtype=np.int8), np.ones(len(cur_x), dtype=np.int8)])
    # Stratified halves: each domain split 50/50 between training and scoring.
    train = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        train[rng.permutation(idx)[: len(idx) // 2]] = True
    clf = HistGradientBoostingClassifier(
        max_iter=50,
        learning_rate=0.1,
        max_leaf_nodes=15,
        early_stopping=False,
        categorical_features=categorical_mask if categorical_mask.any() else None,
        random_state=seed,
    )
    # One OpenMP thread: on a small, busy CPU, spinning worker threads made the fit 5-10x slower.
    with threadpool_limits(1, user_api="openmp"):
        clf.fit(x[train], y[train])
        scores = clf.predict_proba(x[~train])[:, 1]
    held_y = y[~train].astype(np.float64)
    ranks = rankdata(scores)
    auc = float(auc_from_ranks(ranks, held_y))
    perms = np.argsort(rng.random((N_PERMUTATIONS, len(held_y))), axis=1)
    null = auc_from_ranks(ranks[None, :], held_y[perms])
    p_value = (1 + np.sum(null >= auc)) / (N_PERMUTATIONS + 1)
    return {
        "auc": auc,
        "p_value": float(p_value),
        "null_auc_q95": float(np.quantile(null, 0.95)),
        "n_ref": int(len(ref_x)),
        "n_cur": int(len(cur_x)),
    }
