"""Realised and label-free estimated performance on the tabular workload's data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from statsmodels.stats.proportion import proportion_confint

from trainwise.monitor.drift import DriftMonitor
from trainwise.workloads.tabular import load_fair


def _scored_fair(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A classifier fitted on half of Fair; the other half, scored, split into reference and current."""
    frame = load_fair()
    x = pd.get_dummies(frame.drop(columns=["had_affair"]), dtype=float).to_numpy()
    y = frame["had_affair"].to_numpy()
    order = np.random.default_rng(seed).permutation(len(frame))
    train, held = order[: len(order) // 2], order[len(order) // 2 :]
    clf = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    scored = frame.iloc[held].drop(columns=["had_affair"]).reset_index(drop=True)
    probs = clf.predict_proba(x[held])
    for i, c in enumerate(clf.classes_):
        scored[f"prob_{c}"] = probs[:, i]
    scored["pred"] = clf.classes_[probs.argmax(axis=1)]
    scored["label"] = y[held]
    half = len(scored) // 2
    return scored.iloc[:half].reset_index(drop=True), scored.iloc[half:].reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_label_free_estimate_contains_realised_accuracy(seed):
    reference, current = _scored_fair(seed)
    hidden = current.drop(columns=["label"])
    result = DriftMonitor(multivariate=False).fit(reference).check(hidden)
    perf = result["performance"]
    assert "realised" not in perf  # the labels really were hidden
    est = perf["estimated"]
    realised = float((current["pred"] == current["label"]).mean())
    assert est["ci_low"] <= realised <= est["ci_high"], (est, realised)
    assert est["ci_high"] - est["ci_low"] < 0.1  # an interval that says something
    assert est["calibrated_on_labels"] is True
    matrix = np.array(est["expected_confusion_matrix"]["matrix"])
    assert matrix.sum() == pytest.approx(len(current), rel=1e-3)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(est["accuracy"], abs=1e-3)


def test_realised_accuracy_and_wilson_interval():
    reference, current = _scored_fair(0)
    perf = DriftMonitor(multivariate=False).fit(reference).check(current)["performance"]["realised"]
    correct = (current["pred"] == current["label"]).to_numpy()
    lo, hi = proportion_confint(correct.sum(), len(correct), method="wilson")
    assert perf["current"]["accuracy"] == pytest.approx(correct.mean())
    assert (perf["current"]["ci_low"], perf["current"]["ci_high"]) == pytest.approx((lo, hi))
    drop = perf["accuracy_drop"]
    assert drop["ci_low"] < drop["value"] < drop["ci_high"]
