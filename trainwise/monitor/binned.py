"""Two-sample statistics from mergeable profiles (trainwise.monitor.sketch), with the error binning adds.

A numeric column's profile keeps counts in bins (-inf, e0], (e0, e1], ..., (e_last, inf) on the
reference's quantile edges, and each bin's own min, max and sum. Its CDF is known exactly at every
edge; within a bin the quantile function runs from the bin's min to its max in a power curve that
matches the bin's mean (exact for a bin holding one value, as integer columns have).

Kolmogorov-Smirnov from binned CDFs. D_binned = max over edges |F_ref(e) - F_cur(e)| is a lower bound
of the exact D. Inside one bin both CDFs rise monotonically, so F_ref(x) - F_cur(x) can exceed its
value at the bin's ends by at most min(p_ref, p_cur), the smaller of the two samples' masses in
the bin (and by nothing when one sample has no value there, or both hold the same single value):

    D_binned <= D <= D_binned + max over bins of min(p_ref, p_cur)   ("statistic_bound")

The right-hand term is at most the largest reference bin mass, about 1 / N_BINS (0.001) on
quantile edges. The p-value is computed from D_binned. tests/monitor/test_sketch.py checks the
bracket against scipy.stats.ks_2samp.

Wasserstein-1 is the integral over u of |Q_ref(u) - Q_cur(u)| of the two profiles' quantile
functions (Gauss-Legendre within each stretch where both stay in one bin); it differs from the exact distance by at most
sum over bins of mass x (bin max - bin min) of either sample ("wasserstein_bound"). PSI,
Jensen-Shannon and chi-square use exact counts (categorical) or CDFs at exact edges (numeric).
"""

from __future__ import annotations

import numpy as np

from trainwise.monitor import stats as st
from trainwise.monitor.profile import N_PLOT_BINS


class BinnedColumn:
    """The CDF and quantile function of one numeric column profile."""

    def __init__(self, col: dict):
        self.counts = np.asarray(col["counts"], dtype=np.float64)
        self.n = int(col["count"])
        self.edges = np.asarray(col["edges"], dtype=np.float64)
        self.lo = np.array([np.nan if v is None else v for v in col["bin_min"]], dtype=np.float64)
        self.hi = np.array([np.nan if v is None else v for v in col["bin_max"]], dtype=np.float64)
        self.mass = self.counts / max(self.n, 1)
        # Within a bin the quantile function is lo + (hi - lo) f^a, with `a` set so the bin's mean is
        # matched (a = 1: uniform). A tail bin's values crowd near one end; a straight line from its
        # min to its max would put them in the middle and inflate the resampled null distances.
        bin_mean = np.asarray(col["bin_sum"], dtype=np.float64) / np.maximum(self.counts, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = (self.hi - self.lo) / (bin_mean - self.lo) - 1.0
        self.shape = np.where(np.isfinite(a), np.clip(a, 1e-3, 1e3), 1.0)
        self.cum = np.cumsum(self.mass)  # F at the right end of each bin
        self.mean = float(col["mean"])
        self.min, self.max = col["min"], col["max"]

    def cdf_at_edges(self) -> np.ndarray:
        return self.cum[:-1]

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Q(u) for u in [0, 1]: linear within a bin from its min to its max over its mass."""
        u = np.asarray(u, dtype=np.float64)
        nonempty = np.flatnonzero(self.counts > 0)
        cum = self.cum[nonempty]
        k = np.minimum(np.searchsorted(cum, u, "left"), len(nonempty) - 1)
        b = nonempty[k]
        start = cum[k] - self.mass[b]
        frac = np.clip((u - start) / np.maximum(self.mass[b], 1e-300), 0.0, 1.0)
        return self.lo[b] + frac ** self.shape[b] * (self.hi[b] - self.lo[b])

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """F(x): exact at the edges, linear within a bin between its min and max."""
        x = np.asarray(x, dtype=np.float64)
        b = np.searchsorted(self.edges, x, "left")
        below = self.cum[b] - self.mass[b]
        width = self.hi[b] - self.lo[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(width > 0, (x - self.lo[b]) / width, (x >= self.lo[b]).astype(np.float64))
        frac = np.where(self.counts[b] > 0, np.clip(frac, 0.0, 1.0) ** (1.0 / self.shape[b]), 0.0)
        return below + frac * self.mass[b]


def ks_binned(ref: BinnedColumn, cur: BinnedColumn) -> tuple[float, float]:
    """(D_binned, bound): the KS statistic at the edges and how much the exact D can exceed it."""
    d = float(np.max(np.abs(ref.cdf_at_edges() - cur.cdf_at_edges()), initial=0.0))
    same_point = (ref.lo == ref.hi) & (cur.lo == cur.hi) & (ref.lo == cur.lo)
    slack = np.where(same_point, 0.0, np.minimum(ref.mass, cur.mass))
    return d, float(slack.max(initial=0.0))


def wasserstein_binned(ref: BinnedColumn, cur: BinnedColumn) -> tuple[float, float]:
    """(W1 of the profiles' quantile functions, bound on its distance from the exact W1)."""
    grid = np.unique(np.concatenate([[0.0, 1.0], np.clip(ref.cum, 0, 1), np.clip(cur.cum, 0, 1)]))
    a, b = grid[:-1], grid[1:]
    keep = b > a
    a, b = a[keep], b[keep]
    # inside each interval both quantile functions are smooth (one bin each): Gauss-Legendre, 8 points
    nodes, weights = np.polynomial.legendre.leggauss(8)
    u = (a[:, None] + b[:, None]) / 2 + (b - a)[:, None] / 2 * nodes[None, :]
    diff = np.abs(ref.quantile(u) - cur.quantile(u))
    area = (diff * weights[None, :]).sum(axis=1) * (b - a) / 2
    spread = lambda c: np.nansum(c.mass * (c.hi - c.lo))  # noqa: E731
    return float(area.sum()), float(spread(ref) + spread(cur))


class BinnedNumericProfile:
    """A numeric reference column known only by its profile; the DriftMonitor's numeric-column interface."""

    kind = "numeric"
    test = "ks"
    effect_measure = "wasserstein_sd"

    def __init__(self, name: str, col: dict, n_rows: int):
        self.name = name
        self.ref = BinnedColumn(col)
        self.missing_share = col["n_missing"] / n_rows if n_rows else 0.0
        std = float(np.sqrt(col["m2"] / col["count"])) if col["count"] else 0.0
        iqr = float(np.subtract(*self.ref.quantile(np.array([0.75, 0.25])))) if self.n else 0.0
        self.spread_ = std if std > 0 else (iqr if iqr > 0 else 1.0)  # as the in-memory profile
        if self.n:
            self.decile_edges_ = np.unique(self.ref.quantile(np.linspace(0.1, 0.9, 9)))
            lo, hi = self.ref.quantile(np.array([0.005, 0.995]))
        else:
            self.decile_edges_, (lo, hi) = np.array([]), (0.0, 1.0)
        self.plot_edges_ = np.linspace(lo, hi if hi > lo else lo + 1.0, N_PLOT_BINS + 1)

    @property
    def n(self) -> int:
        return self.ref.n

    def compare(self, window: BinnedColumn) -> dict:
        d, d_bound = ks_binned(self.ref, window)
        w1, w1_bound = wasserstein_binned(self.ref, window)
        return {
            "statistic": d,
            "statistic_bound": d_bound,
            "p_value": st.ks_pvalue(d, self.n, window.n),
            "effect_size": w1 / self.spread_,
            "effect_size_bound": w1_bound / self.spread_,
            "wasserstein": w1,
            "psi": st.psi(self._shares(self.ref, self.decile_edges_), self._shares(window, self.decile_edges_)),
            "mean_ref": self.ref.mean,
            "mean_cur": window.mean,
        }

    @staticmethod
    def _shares(col: BinnedColumn, inner_edges: np.ndarray) -> np.ndarray:
        return np.diff(np.concatenate([[0.0], col.cdf(inner_edges), [1.0]]))

    def plot_shares(self, window: BinnedColumn) -> dict:
        inner = self.plot_edges_[1:-1]
        return {
            "edges": self.plot_edges_.tolist(),
            "ref": self._shares(self.ref, inner).tolist(),
            "cur": self._shares(window, inner).tolist(),
        }

    def null_effects(self, sorted_uniforms: np.ndarray) -> np.ndarray:
        """As NumericProfile.null_effects, with the profile's quantile function for the sorted reference."""
        k = sorted_uniforms.shape[1]
        resampled = self.ref.quantile(sorted_uniforms)
        mid_quantiles = self.ref.quantile((np.arange(k) + 0.5) / k)
        return np.abs(resampled - mid_quantiles).mean(axis=1) / self.spread_
