"""The fast statistics equal scipy's (or a direct computation) on small data, ties included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from trainwise.monitor import stats as st
from trainwise.monitor.profile import NumericProfile


def _samples(kind: str, m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "continuous":
        a, b = rng.normal(size=m), rng.normal(0.3, 1.5, size=n)
    else:  # heavy ties
        a, b = rng.integers(0, 4, m).astype(float), rng.integers(0, 6, n).astype(float)
    return np.sort(a), np.sort(b)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("m,n", [(1, 1), (7, 5), (100, 100), (1000, 37), (50, 3000)])
def test_ks_and_wasserstein_equal_scipy(kind, m, n):
    a, b = _samples(kind, m, n, seed=m * 31 + n)
    assert st.ks_statistic_sorted(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert st.wasserstein_sorted(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-10, abs=1e-12)


def test_ks_pvalue_equals_scipy_asymptotic():
    a, b = _samples("continuous", 400, 300, seed=3)
    d = st.ks_statistic_sorted(a, b)
    assert st.ks_pvalue(d, len(a), len(b)) == pytest.approx(stats.ks_2samp(a, b, method="asymp").pvalue, rel=1e-9)


def test_psi_equals_direct_formula():
    r = np.array([0.25, 0.25, 0.5])
    c = np.array([0.2, 0.3, 0.5])
    direct = sum((ci - ri) * np.log(ci / ri) for ri, ci in zip(r, c, strict=True))
    assert st.psi(r, c) == pytest.approx(direct)
    assert st.psi(r, r) == 0.0


def test_bin_shares_equal_numpy_histogram():
    rng = np.random.default_rng(0)
    x = np.sort(rng.normal(size=500))
    edges = np.array([-1.0, 0.0, 0.5])
    # bins (-inf, -1], (-1, 0], (0, 0.5], (0.5, inf): right-closed, as the decile edges are quantiles
    direct = (
        np.array([(x <= -1).sum(), ((x > -1) & (x <= 0)).sum(), ((x > 0) & (x <= 0.5)).sum(), (x > 0.5).sum()]) / 500
    )
    np.testing.assert_allclose(st.bin_shares(x, edges), direct)


def test_js_distance_equals_scipy_and_vectorises():
    p = np.array([0.5, 0.3, 0.2, 0.0])
    qs = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0]])
    got = st.js_distance(p[None, :], qs)
    want = [jensenshannon(p, q, base=2) for q in qs]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_chi_square_equals_scipy_when_no_pooling_needed():
    ref, cur = np.array([400.0, 300, 300]), np.array([50.0, 20, 30])
    stat, p = st.chi_square_pvalue(ref, cur)
    want = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert (stat, p) == pytest.approx((want[0], want[1]))


def test_chi_square_pools_sparse_categories():
    ref, cur = np.array([1000.0, 1000, 2, 1]), np.array([50.0, 50, 1, 0])
    stat, p = st.chi_square_pvalue(ref, cur)
    pooled = stats.chi2_contingency(np.array([[1000, 1000, 3], [50, 50, 1]]), correction=False)
    assert stat == pytest.approx(pooled[0])


def test_benjamini_hochberg_step_up():
    # sorted p: 0.001 <= 0.05/4, 0.02 <= 0.1/4 ... : BH rejects the first two, not the rest
    p = np.array([0.02, 0.001, 0.5, np.nan, 0.04])
    assert st.benjamini_hochberg(p, 0.05).tolist() == [True, True, False, False, False]


def test_null_effect_approximation_close_to_exact_wasserstein():
    rng = np.random.default_rng(1)
    prof = NumericProfile("x", pd.Series(rng.normal(size=20000)))
    uniforms = np.sort(rng.random((5, 400)), axis=1)
    approx = prof.null_effects(uniforms)
    exact = [
        st.wasserstein_sorted(prof.sorted_, prof.sorted_[(u * prof.n).astype(int)]) / prof.spread_ for u in uniforms
    ]
    np.testing.assert_allclose(approx, exact, rtol=0.1)


@pytest.mark.parametrize("kind", ["continuous", "ties"])
@pytest.mark.parametrize("m,n", [(1, 1), (7, 5), (1000, 37), (50, 3000), (5000, 10)])
def test_prefix_sum_wasserstein_equals_scipy(kind, m, n):
    a, b = _samples(kind, m, n, seed=m + 7 * n)
    assert st.QuantilePrefix(a).wasserstein(b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


def test_prefix_sum_wasserstein_keeps_precision_on_large_offsets():
    rng = np.random.default_rng(2)
    a, b = np.sort(1e9 + rng.normal(size=20000)), np.sort(1e9 + rng.normal(0.1, size=50))
    assert st.QuantilePrefix(a).wasserstein(b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-6)
