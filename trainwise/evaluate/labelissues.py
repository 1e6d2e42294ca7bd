"""Label issues: examples whose given label disagrees with out-of-fold predicted probabilities.

Confident learning (Northcutt, Jiang & Chuang 2021, JAIR 70) as implemented by cleanlab, fed with
out-of-fold probabilities from a plain scikit-learn model (`cross_val_predict`), so no example is
judged by a model that saw its own label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MAX_ROWS = 5000  # cross-validated fits grow with rows; a sample finds the same kind of issues
N_FOLDS = 5


def table_model(frame: pd.DataFrame):
    """Impute + scale numeric columns, one-hot the others, then logistic regression."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    other = [c for c in frame.columns if c not in numeric]
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", max_categories=50)
                ),
                other,
            ),
        ]
    )
    return make_pipeline(prep, LogisticRegression(max_iter=1000))


def find_label_issues(
    features: pd.DataFrame | np.ndarray, labels: np.ndarray, seed: int = 0, max_rows: int = MAX_ROWS
) -> dict:
    """Rows (positions in `features`) that cleanlab flags, with given and suggested labels."""
    # lazy: cleanlab takes seconds to import; only the label-issue check of `trainwise data check` uses it
    from cleanlab.filter import find_label_issues as cl_find

    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    classes, y = np.unique(labels[rows], return_inverse=True)
    counts = np.bincount(y)
    if len(classes) < 2 or counts.min() < N_FOLDS:
        return {
            "checked": int(len(rows)),
            "count": 0,
            "share": 0.0,
            "rows": [],
            "note": f"needs at least 2 classes with {N_FOLDS} examples each",
        }
    if isinstance(features, pd.DataFrame):
        x, model = features.iloc[rows].reset_index(drop=True), table_model(features)
    else:
        x = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)[rows]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed)
    probs = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    ranked = cl_find(y, probs, return_indices_ranked_by="self_confidence")
    return {
        "checked": int(len(rows)),
        "count": int(len(ranked)),
        "share": float(len(ranked) / len(rows)),
        "rows": [
            {"row": int(rows[i]), "given": str(classes[y[i]]), "suggested": str(classes[probs[i].argmax()])}
            for i in ranked[:50]
        ],
        "all_rows": [int(rows[i]) for i in ranked],
    }
