"""Metrics equal scikit-learn's on the same predictions, overall, per slice and per bootstrap replicate."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from trainwise.errors import DataError
from trainwise.evaluate.calibration import calibration_metrics, reliability_bins
from trainwise.evaluate.metrics import class_arrays, compute_metrics
from trainwise.evaluate.resample import ClassificationStats, LMStats


def sk_reference(y, p):
    k = p.shape[1]
    pred = p.argmax(1)
    labels = np.arange(k)
    auc = skm.roc_auc_score(y, p[:, 1]) if k == 2 else skm.roc_auc_score(y, p, multi_class="ovr", labels=labels)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(y, pred, labels=labels, average="macro", zero_division=0),
        "f1_macro": skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0),
        "roc_auc": auc,
        "log_loss": skm.log_loss(y, p, labels=labels),
        "brier": skm.brier_score_loss(y, p, labels=labels),
    }


@pytest.mark.parametrize("k", [2, 5])
def test_compute_metrics_equal_sklearn(preds, k):
    df = preds(2000, k, seed=k)
    m = compute_metrics(df, "classification")
    y, p, classes = class_arrays(df)
    ref = sk_reference(y, p)
    for name, value in ref.items():
        assert m[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert m["f1_micro"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="micro"))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p.argmax(1)).tolist()
    per_class = skm.precision_recall_fscore_support(y, p.argmax(1), labels=np.arange(k), zero_division=0)
    assert [m["per_class"][c]["f1"] for c in classes] == pytest.approx(per_class[2])


@pytest.mark.parametrize("k,ties", [(2, False), (2, True), (4, True), (6, False)])
def test_bootstrap_engine_point_equals_sklearn(preds, k, ties):
    df = preds(1500, k, seed=10 + k, signal=0.8, ties=ties)
    y, p, _ = class_arrays(df)
    got = ClassificationStats().fit(y, p).metrics()
    for name, value in sk_reference(y, p).items():
        assert got[name][0] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert got["ece"][0] == pytest.approx(calibration_metrics(p, y)["ece"], rel=1e-9)


def test_bootstrap_replicate_equals_sklearn_on_resampled_data(preds):
    """A replicate's metrics (weighted sums) equal sklearn on the explicitly resampled rows."""
    df = preds(800, 3, seed=3, ties=True)
    y, p, _ = class_arrays(df)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, len(y), len(y))
    counts = np.bincount(idx, minlength=len(y)).astype(float)[None]
    got = ClassificationStats().fit(y, p).metrics(counts)
    ref = sk_reference(y[idx], p[idx])
    for name, value in ref.items():
        assert got[name][0] == pytest.approx(value, rel=1e-9), name


def test_class_missing_from_predictions_and_auc_undefined(preds):
    df = preds(300, 3, seed=1, labels=np.zeros(300, dtype=int))  # only class c0 is true
    m = compute_metrics(df, "classification")
    assert m["roc_auc"] is None
    y, p, _ = class_arrays(df)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p.argmax(1)))


def test_ece_bins_equal_sklearn_calibration_curve(preds):
    df = preds(3000, 4, seed=2, signal=1.0)
    y, p, _ = class_arrays(df)
    conf, correct = p.max(1), p.argmax(1) == y
    bins = reliability_bins(conf, correct, 15)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=15, strategy="uniform")
    used = bins["count"] > 0
    np.testing.assert_allclose(bins["accuracy"][used], prob_true)
    np.testing.assert_allclose(bins["confidence"][used], prob_pred)
    m = calibration_metrics(p, y)
    w = bins["count"][used] / len(y)
    assert m["ece"] == pytest.approx(np.sum(w * np.abs(prob_true - prob_pred)))
    assert m["ece_max"] == pytest.approx(np.max(np.abs(prob_true - prob_pred)))
    assert m["ece_l2"] >= m["ece"]  # root-mean-square gap is never below the mean gap
    assert sum(m["reliability"]["count"]) == len(y)


def test_overconfident_model_has_large_ece(preds):
    df = preds(2000, 2, seed=4, signal=0.3)
    sharp = df.copy()
    p = sharp[["prob_c0", "prob_c1"]].to_numpy()
    sharp_p = p**8 / (p**8).sum(1, keepdims=True)  # same ranking, far more confident
    sharp[["prob_c0", "prob_c1"]] = sharp_p
    assert compute_metrics(sharp, "classification")["ece"] > compute_metrics(df, "classification")["ece"] + 0.1


def test_slices_have_counts_cis_and_small_flag(preds):
    df = preds(1200, 3, seed=7)
    m = compute_metrics(df, "classification", slices=["region"], min_slice_count=100, n_boot=100)
    rows = {r["value"]: r for r in m["slices"]["region"]}
    assert set(rows) == set(df["region"])
    assert sum(r["n"] for r in rows.values()) == len(df)
    for value, r in rows.items():
        part = df[df["region"] == value]
        assert r["small"] == (len(part) < 100)
        y, p, _ = class_arrays(part, ["c0", "c1", "c2"])
        assert r["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
        lo, hi = r["ci"]["accuracy"]
        assert lo <= r["metrics"]["accuracy"] <= hi and hi - lo > 0
    assert rows["tiny"]["small"] and not rows["north"]["small"]


def test_unknown_slice_column_is_a_clear_error(preds):
    with pytest.raises(DataError, match="slice column.*nope.*do not exist"):
        compute_metrics(preds(100, 2), "classification", slices=["nope"])


def test_lm_metrics_and_groups():
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "loss": rng.gamma(2.0, 1.0, n),
            "correct": rng.uniform(0, 1, n),
            "group": np.where(np.arange(n) < 300, "json", "email"),
        }
    )
    m = compute_metrics(df, "lm", n_boot=50)
    assert m["loss"] == pytest.approx(df["loss"].mean())
    assert m["bits_per_byte"] == pytest.approx(df["loss"].mean() / np.log(2))
    assert m["next_byte_accuracy"] == pytest.approx(df["correct"].mean())
    groups = {g["value"]: g for g in m["groups"]}
    assert groups["email"]["n"] == 100
    assert groups["email"]["metrics"]["loss"] == pytest.approx(df["loss"][300:].mean())
    s = LMStats().fit(df["loss"], df["correct"]).metrics(np.ones((1, n)) * 2)
    assert s["loss"][0] == pytest.approx(m["loss"])


def test_binned_auc_for_the_bootstrap_is_close_to_exact(preds):
    df = preds(5000, 2, seed=9, signal=1.0)
    y, p, _ = class_arrays(df)
    exact = ClassificationStats().fit(y, p).metrics()["roc_auc"][0]
    binned = ClassificationStats(auc_bins=256).fit(y, p).metrics()["roc_auc"][0]
    assert exact == pytest.approx(skm.roc_auc_score(y, p[:, 1]))
    assert binned != exact and abs(binned - exact) < 1 / 256
