"""The drift verdicts the issue promises, on planted shifts with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_table

from trainwise.monitor.drift import DriftMonitor

REQUIRED_COLUMN_FIELDS = {"name", "test", "effect_size", "p_value", "drift"}


@pytest.fixture(scope="module")
def monitor():
    return DriftMonitor(seed=0).fit(make_table(20000, seed=1))


def test_identical_reference_and_current_is_no_drift():
    ref = make_table(5000, seed=1)
    result = DriftMonitor().fit(ref).check(ref)
    assert result["dataset_drift"] is False
    assert not any(c["drift"] for c in result["columns"])
    assert result["multivariate"]["drift"] is False
    assert {"dataset_drift", "expected_false_alarm_rate", "columns"} <= set(result)
    assert all(REQUIRED_COLUMN_FIELDS <= set(c) for c in result["columns"])


@pytest.mark.parametrize("shifted", ["x0", "income"])
def test_half_sd_shift_flags_that_column_and_only_it(monitor, shifted):
    result = monitor.check(make_table(5000, seed=2, shift_sd=0.5, shifted=shifted))
    flagged = [c["name"] for c in result["columns"] if c["drift"]]
    assert flagged == [shifted]
    assert result["dataset_drift"] is True
    col = next(c for c in result["columns"] if c["name"] == shifted)
    assert col["effect_size"] > col["threshold"] and col["significant"]


def test_unshifted_window_from_same_distribution_is_no_drift(monitor):
    result = monitor.check(make_table(5000, seed=3))
    assert result["dataset_drift"] is False, result["verdict"]


def test_too_small_window_is_reported_not_judged(monitor):
    result = monitor.check(make_table(8, seed=4, shift_sd=3.0))
    assert result["window_too_small"] is True
    assert result["dataset_drift"] is None
    assert "too small" in result["verdict"]
    assert all(c["status"] == "too_small" and not c["drift"] for c in result["columns"])


def test_trivial_shift_in_large_window_is_significant_but_no_alarm():
    ref = make_table(200_000, seed=5)[["x0", "x1"]]
    cur = make_table(200_000, seed=6, shift_sd=0.03)[["x0", "x1"]]
    result = DriftMonitor(multivariate=False).fit(ref).check(cur)
    x0 = result["columns"][0]
    assert x0["p_value"] < 1e-6  # a 0.03-SD shift is real at this size...
    assert x0["drift"] is False and result["dataset_drift"] is False  # ...and too small to matter


def test_threshold_tracks_window_size(monitor):
    small, large = monitor.null_thresholds(50), monitor.null_thresholds(50_000)
    assert small["x0"] > 3 * large["x0"]  # no-drift noise shrinks about like 1/sqrt(n)
    assert any(k <= 50 for k in monitor.thresholds_)  # calibrated once, cached by size


def test_categorical_shift_and_unseen_categories(monitor):
    cur = make_table(3000, seed=7)
    rng = np.random.default_rng(0)
    cur["region"] = rng.choice(["north", "south", "mars"], len(cur), p=[0.2, 0.5, 0.3])
    result = monitor.check(cur)
    region = next(c for c in result["columns"] if c["name"] == "region")
    assert region["drift"] and region["test"] == "chi2"
    assert region["unseen_share"] == pytest.approx((cur["region"] == "mars").mean())
    assert "mars" in region["unseen_categories"]


def test_prediction_drift_is_reported_separately():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=4000), "prob_yes": rng.beta(2, 5, 4000)})
    ref["prob_no"] = 1 - ref["prob_yes"]
    ref["pred"] = np.where(ref["prob_yes"] > 0.5, "yes", "no")
    cur = ref.copy()
    cur["prob_yes"] = rng.beta(5, 2, 4000)
    cur["prob_no"] = 1 - cur["prob_yes"]
    cur["pred"] = np.where(cur["prob_yes"] > 0.5, "yes", "no")
    result = DriftMonitor(multivariate=False).fit(ref).check(cur)
    assert [c["name"] for c in result["columns"]] == ["x"]
    assert result["dataset_drift"] is False and result["prediction_drift"] is True
    assert {c["name"] for c in result["prediction_columns"] if c["drift"]} >= {
        "prob_yes",
        "prediction",
    }  # eval's pred, in the log's layout


def test_sklearn_contract_and_cached_calibration():
    params = dict(alpha=0.01, min_window_rows=50, seed=3)
    monitor = DriftMonitor(**params)
    assert {k: getattr(monitor, k) for k in params} == params
    assert not [a for a in vars(monitor) if a.endswith("_")]  # __init__ learns nothing
    assert monitor.fit(make_table(2000, seed=1)) is monitor
    first = monitor.null_thresholds(400)
    cached = dict(monitor.thresholds_)
    assert monitor.null_thresholds(400) == first and monitor.thresholds_ == cached  # no recalibration
    again = DriftMonitor(**params).fit(make_table(2000, seed=1)).null_thresholds(400)
    assert again == first  # same seed, same thresholds


def test_missing_values_are_reported_and_a_mostly_missing_column_is_too_small(monitor):
    cur = make_table(2000, seed=8)
    cur.loc[cur.index[:1990], "x1"] = np.nan
    cur.loc[cur.index[:200], "plan"] = None
    result = monitor.check(cur)
    cols = {c["name"]: c for c in result["columns"]}
    assert cols["x1"]["status"] == "too_small" and cols["x1"]["missing_share_cur"] == pytest.approx(0.995)
    assert cols["plan"]["missing_share_cur"] == pytest.approx(0.1) and cols["plan"]["status"] == "ok"
