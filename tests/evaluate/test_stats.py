"""DeLong against its definition, a published worked example and the bootstrap; McNemar against statsmodels;
the paired bootstrap CI's coverage in simulation."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar

from trainwise.evaluate.compare import compare_predictions, paired_deltas
from trainwise.evaluate.stats import delong, mcnemar_exact


def delong_by_definition(y, scores):
    """DeLong et al. 1988 structural components by their O(m n) definition: psi(x, y) = 1, 1/2, 0."""
    pos, neg = [s[y] for s in scores], [s[~y] for s in scores]
    v10, v01 = [], []
    for x, z in zip(pos, neg, strict=True):
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s = np.cov(np.stack(v10)) / len(pos[0]) + np.cov(np.stack(v01)) / len(neg[0])
    return np.array([v.mean() for v in v10]), np.atleast_2d(s)


def test_delong_equals_its_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=300) < 0.4
    a = np.round(y * 0.8 + rng.normal(size=300), 1)  # rounding makes ties
    b = np.round(y * 0.5 + 0.7 * a + rng.normal(size=300), 1)
    got = delong(y, a, b)
    aucs, cov = delong_by_definition(y, [a, b])
    assert got["auc_a"] == pytest.approx(aucs[0]) and got["auc_b"] == pytest.approx(aucs[1])
    assert got["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert got["se_a"] == pytest.approx(np.sqrt(cov[0, 0]))
    assert got["se_delta"] == pytest.approx(np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))


def test_delong_hanley_mcneil_1982_worked_example():
    """Hanley & McNeil 1982 (Radiology 143:29), Table 1: CT ratings of 109 patients.

    They report AUC = 0.893 with standard error 0.032 from their exponential approximation; DeLong's
    nonparametric SE on the same data is close to it (both estimate the same quantity).
    """
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.ones(51, bool), np.zeros(58, bool)]
    got = delong(y, np.r_[abnormal, normal])
    assert round(got["auc_a"], 3) == 0.893
    assert got["se_a"] == pytest.approx(0.032, abs=0.002)


def test_delong_se_of_difference_matches_paired_bootstrap():
    rng = np.random.default_rng(1)
    n = 1500
    y = rng.uniform(size=n) < 0.5
    a = y * 1.0 + rng.normal(size=n)
    b = y * 1.2 + 0.5 * a + rng.normal(size=n)
    d = delong(y, a, b)
    boots = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        boots.append(roc_auc_score(y[i], b[i]) - roc_auc_score(y[i], a[i]))
    assert d["se_delta"] == pytest.approx(np.std(boots), rel=0.15)
    assert d["delta"] == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))


def test_mcnemar_equals_statsmodels_through_compare(preds):
    base = preds(600, 3, seed=1)
    cand = preds(600, 3, seed=2, labels=pd.Categorical(base["label"]).codes)
    shuffled = cand.sample(frac=1.0, random_state=3)  # matched by id, not by row order
    got = compare_predictions(base, shuffled, "classification", n_boot=50).tests["mcnemar"]
    right_b = base["pred"] == base["label"]
    right_c = cand["pred"] == cand["label"]
    table = pd.crosstab(right_b, right_c).reindex(index=[True, False], columns=[True, False]).to_numpy()
    ref = mcnemar(table, exact=True)
    assert got["p_value"] == pytest.approx(ref.pvalue)
    assert got["statistic"] == pytest.approx(ref.statistic)
    assert mcnemar_exact(right_b, right_c)["table"] == table.tolist()


def test_paired_bootstrap_ci_covers_true_difference_at_nominal_rate():
    """Simulate pairs of models with a known true accuracy difference; the 95% CI should cover it ~95%."""
    rng = np.random.default_rng(2)
    n, sims, covered = 400, 150, 0
    p_base, p_cand = 0.80, 0.77  # true accuracies; the candidate's errors overlap the baseline's
    for s in range(sims):
        u = rng.uniform(size=n)
        right_b = u < p_base
        right_c = u < p_cand  # nested errors: paired predictions are strongly correlated
        frames = []
        for right in (right_b, right_c):
            p1 = np.where(right, 0.2, 0.8)  # class 0 is the true class: right means prob_c0 > 0.5
            frames.append(pd.DataFrame({"id": np.arange(n), "label": "c0", "prob_c0": 1 - p1, "prob_c1": p1}))
        deltas, _ = paired_deltas(frames[0], frames[1], "classification", ["c0", "c1"], 200, s)
        lo, hi = deltas["accuracy"]["ci95"]
        covered += lo <= p_cand - p_base <= hi
    assert 0.89 <= covered / sims <= 0.99
