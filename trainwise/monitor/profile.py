"""What the monitor remembers of one reference column, and how a window's column is compared to it.

Numeric columns keep their sorted values (for KS and Wasserstein), their spread (to normalise the
Wasserstein distance into reference standard deviations) and decile edges (for PSI). Categorical
columns keep category shares (for chi-square, Jensen-Shannon and unseen categories).

Each profile also draws its own no-drift distribution of the effect size at a given window size
(`null_effects`), by resampling the reference: that is what calibrates the drift threshold to the
window's size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainwise.monitor import stats as st

MAX_CATEGORIES = 50  # rarer categories are pooled into "(other)" so chi-square cells stay populated
OTHER = "(other)"
N_PLOT_BINS = 30
N_PLOT_CATEGORIES = 12


class NumericProfile:
    kind = "numeric"
    test = "ks"
    effect_measure = "wasserstein_sd"

    def __init__(self, name: str, values: pd.Series):
        self.name = name
        raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        self.missing_share = float(np.isnan(raw).mean()) if len(raw) else 0.0
        self.sorted_ = np.sort(raw[~np.isnan(raw)])
        self.prefix_ = st.QuantilePrefix(self.sorted_) if len(self.sorted_) else None
        std = float(self.sorted_.std()) if len(self.sorted_) else 0.0
        iqr = float(np.subtract(*np.quantile(self.sorted_, [0.75, 0.25]))) if len(self.sorted_) else 0.0
        # Normalise by the standard deviation; a constant column falls back to the IQR, then to 1.
        self.spread_ = std if std > 0 else (iqr if iqr > 0 else 1.0)
        self.decile_edges_ = (
            np.unique(np.quantile(self.sorted_, np.linspace(0.1, 0.9, 9))) if len(self.sorted_) else np.array([])
        )
        lo, hi = np.quantile(self.sorted_, [0.005, 0.995]) if len(self.sorted_) else (0.0, 1.0)
        self.plot_edges_ = np.linspace(lo, hi if hi > lo else lo + 1.0, N_PLOT_BINS + 1)

    @property
    def n(self) -> int:
        return len(self.sorted_)

    def window_values(self, values: pd.Series) -> tuple[np.ndarray, float]:
        raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        missing = np.isnan(raw)
        return np.sort(raw[~missing]), float(missing.mean()) if len(raw) else 0.0

    def compare(self, cur_sorted: np.ndarray) -> dict:
        d = st.ks_statistic_sorted(self.sorted_, cur_sorted)
        # Small windows: prefix sums, O(n log m); comparable sizes: one pass over both, O(n + m).
        small = len(cur_sorted) * 8 < self.n
        w1 = self.prefix_.wasserstein(cur_sorted) if small else st.wasserstein_sorted(self.sorted_, cur_sorted)
        return {
            "statistic": d,
            "p_value": st.ks_pvalue(d, self.n, len(cur_sorted)),
            "effect_size": w1 / self.spread_,
            "wasserstein": w1,
            "psi": st.psi(
                st.bin_shares(self.sorted_, self.decile_edges_), st.bin_shares(cur_sorted, self.decile_edges_)
            ),
            "mean_ref": self.prefix_.mean,
            "mean_cur": float(cur_sorted.mean()),
        }

    def plot_shares(self, cur_sorted: np.ndarray) -> dict:
        inner = self.plot_edges_[1:-1]
        return {
            "edges": self.plot_edges_.tolist(),
            "ref": st.bin_shares(self.sorted_, inner).tolist(),
            "cur": st.bin_shares(cur_sorted, inner).tolist(),
        }

    def null_effects(self, sorted_uniforms: np.ndarray) -> np.ndarray:
        """Effect sizes of resamples of the reference, given sorted uniforms in [0, 1) of shape (B, k).

        A resample's sorted values are the reference's sorted values at sorted random ranks; its
        Wasserstein distance to the reference is taken against the reference quantile function at
        the k interval midpoints, which differs from the exact distance by O(1/k) against a null
        size of O(1/sqrt(k)).
        """
        k = sorted_uniforms.shape[1]
        m = self.n
        # Sorted draws with replacement = the sorted reference at sorted uniform ranks.
        resampled = self.sorted_[np.minimum((sorted_uniforms * m).astype(np.int64), m - 1)]
        mid_quantiles = self.sorted_[np.minimum(((np.arange(k) + 0.5) / k * m).astype(np.int64), m - 1)]
        return np.abs(resampled - mid_quantiles).mean(axis=1) / self.spread_


class CategoricalProfile:
    kind = "categorical"
    test = "chi2"
    effect_measure = "js_distance"

    def __init__(self, name: str, values: pd.Series | None = None):
        self.name = name
        if values is not None:
            self._set_counts(_string_counts(values), float(values.isna().mean()) if len(values) else 0.0)

    @classmethod
    def from_counts(cls, name: str, counts: dict, missing_share: float) -> "CategoricalProfile":
        """From exact counts per value (a profile's, trainwise.monitor.sketch): the same as from the values."""
        profile = cls(name)
        series = pd.Series(counts, dtype=np.float64) if counts else pd.Series([], dtype=np.float64)
        profile._set_counts(series[series > 0].sort_values(ascending=False, kind="stable"), missing_share)
        return profile

    def _set_counts(self, counts: pd.Series, missing_share: float) -> None:
        self.missing_share = missing_share
        top = counts.iloc[:MAX_CATEGORIES]
        self.categories_ = [str(c) for c in top.index]
        self.counts_ = top.to_numpy(dtype=np.float64)
        if len(counts) > MAX_CATEGORIES:
            self.categories_.append(OTHER)
            self.counts_ = np.append(self.counts_, counts.iloc[MAX_CATEGORIES:].sum())
        self.all_categories_ = set(counts.index.astype(str))

    @property
    def n(self) -> int:
        return int(self.counts_.sum())

    @property
    def shares_(self) -> np.ndarray:
        return self.counts_ / max(self.n, 1)

    def window_values(self, values: pd.Series) -> tuple[pd.Series, float]:
        return _string_counts(values), float(values.isna().mean()) if len(values) else 0.0

    def window_counts(self, cur_counts: pd.Series) -> tuple[np.ndarray, dict]:
        """Window counts aligned to the reference categories, plus an unseen bucket; and the unseen."""
        known = [c for c in self.categories_ if c != OTHER]
        aligned = cur_counts.reindex(known, fill_value=0).to_numpy(dtype=np.float64)
        rest = cur_counts[~cur_counts.index.isin(known)]
        unseen = rest[~rest.index.isin(self.all_categories_)]
        if OTHER in self.categories_:
            aligned = np.append(aligned, rest.sum() - unseen.sum())
        return np.append(aligned, unseen.sum()), {str(k): int(v) for k, v in unseen.iloc[:10].items()}

    def compare(self, cur_counts: pd.Series) -> dict:
        cur, unseen = self.window_counts(cur_counts)
        ref = np.append(self.counts_, 0.0)
        chi2, p = st.chi_square_pvalue(ref, cur)
        n_cur = cur.sum()
        return {
            "statistic": chi2,
            "p_value": p,
            "effect_size": float(st.js_distance(ref, cur)),
            "psi": st.psi(ref / ref.sum(), cur / n_cur),
            "unseen_share": float(cur[-1] / n_cur),
            "unseen_categories": unseen,
        }

    def plot_shares(self, cur_counts: pd.Series) -> dict:
        """The most common categories, the rest pooled, and the unseen share (a readable plot)."""
        cur, _ = self.window_counts(cur_counts)
        cur = cur / max(cur.sum(), 1)
        ref = np.append(self.shares_, 0.0)
        names = self.categories_ + ["(unseen)"]
        if len(names) > N_PLOT_CATEGORIES + 2:
            keep = N_PLOT_CATEGORIES
            pool = lambda v: np.concatenate([v[:keep], [v[keep:-1].sum()], v[-1:]])  # noqa: E731
            names, ref, cur = names[:keep] + ["(rest)", "(unseen)"], pool(ref), pool(cur)
        return {"categories": names, "ref": ref.tolist(), "cur": cur.tolist()}

    def null_effects(self, n_rows: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
        """Jensen-Shannon distances of multinomial resamples of `n_rows` from the reference shares."""
        draws = rng.multinomial(n_rows, self.shares_, size=n_resamples)
        return st.js_distance(self.shares_[None, :], draws)


def _string_counts(values: pd.Series) -> pd.Series:
    """Counts of non-missing values keyed by their string form, largest first.

    Counting before converting to strings keeps a million-row column from being materialised as
    Python strings; values that print the same (1 and "1") are merged afterwards.
    """
    counts = values.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    counts.index = counts.index.astype(str)
    if counts.index.has_duplicates:
        counts = counts.groupby(level=0).sum()
    return counts.sort_values(ascending=False, kind="stable")


def infer_kind(values: pd.Series, override: str | None = None) -> str:
    """'numeric' for numeric dtypes (bool excluded), else 'categorical'; `override` wins."""
    if override:
        return override
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "categorical"
    return "numeric"


def build_profile(name: str, values: pd.Series, kind: str):
    return NumericProfile(name, values) if kind == "numeric" else CategoricalProfile(name, values)
