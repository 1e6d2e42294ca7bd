"""The verdict counts drifted columns and the multivariate test apart: the test is not a column."""

from __future__ import annotations

import re

import pytest
from conftest import make_table

from trainwise.monitor.drift import DriftMonitor


@pytest.fixture(scope="module")
def monitor():
    return DriftMonitor(seed=0).fit(make_table(20000, seed=1))


def test_columns_and_the_multivariate_test_are_reported_separately(monitor):
    result = monitor.check(make_table(5000, seed=2, shift_sd=0.5, shifted="x0"))
    drifted = [c["name"] for c in result["columns"] if c["drift"]]
    assert drifted == ["x0"] and result["multivariate"]["drift"] is True
    verdict = result["verdict"]
    assert verdict.startswith(
        f"drift in 1 of {len(result['columns'])} columns (x0) and in the multivariate test (domain-classifier AUC "
    )
    assert "(multivariate)" not in verdict and "drift in 2 of" not in verdict


def test_no_drift_says_so_for_both(monitor):
    verdict = monitor.check(make_table(5000, seed=3))["verdict"]
    assert re.match(
        r"no drift in 6 columns nor in the multivariate test \(domain-classifier AUC 0\.\d+\); "
        r"expected false-alarm rate",
        verdict,
    ), verdict


def test_without_the_multivariate_test_only_columns_are_counted():
    verdict = (
        DriftMonitor(seed=0, multivariate=False)
        .fit(make_table(2000, seed=1))
        .check(make_table(2000, seed=2, shift_sd=0.5))["verdict"]
    )
    assert verdict.startswith("drift in 1 of 6 columns (x0); expected false-alarm rate"), verdict
