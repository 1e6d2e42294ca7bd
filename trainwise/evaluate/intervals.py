"""Confidence intervals of a paired metric change (candidate - baseline on the same examples).

Which interval depends on what the metric is:

- accuracy (a matched pair of 0/1 outcomes per example): the Agresti-Min interval, the Wald
  interval for a difference of matched proportions after adding 1/2 to each cell of the 2x2
  table (Agresti & Min 2005, "Simple improved confidence intervals for comparing matched
  proportions", Statistics in Medicine 24:729). Its coverage stays near nominal with few
  discordant pairs, where the plain Wald and the percentile bootstrap cover too little; with
  none at all it still has a width, so a tiny test set never "shows" two models equal.
- other means of per-example values (log loss, Brier score, lm loss and next-byte accuracy per
  window): the paired t interval on the per-example differences (scipy's `ttest_rel`
  interval); a mean weighted by positions per window is a ratio, whose standard error is the
  linearised (HC1 sandwich) one.
- everything else (ECE, AUC, macro F1/precision/recall, balanced accuracy): the paired
  bootstrap's standard error, inflated by sqrt(n / (n - 1)) as for a mean, with t quantiles
  and centred on the observed change. The percentile interval is not used: it is biased for ECE
  (the bootstrap ECE is larger than the sample's) and anti-conservative at small n
  (docs/evaluate.md has the coverage figures).

Every function is vectorised over leading axes, so `benchmarks/gate_calibration.py` judges
thousands of simulated comparisons with the same code the gate uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A paired change and its sampling distribution: (center - point) / se ~ t(df).

    point: the observed change; center: where the interval is centred (the point, except for the
    Agresti-Min adjustment); se: its standard error; df: degrees of freedom (inf = normal).
    """

    point: np.ndarray | float
    center: np.ndarray | float
    se: np.ndarray | float
    df: np.ndarray | float
    method: str

    def quantile(self, confidence: float) -> np.ndarray | float:
        return stats.t.ppf(confidence, self.df)  # df = inf gives the normal quantile

    def bounds(self, confidence: float) -> tuple:
        """(lower, upper): each a one-sided bound at `confidence` (together a 2c - 1 two-sided interval)."""
        half = self.quantile(confidence) * self.se
        return self.center - half, self.center + half


def paired_interval(
    metric: str, values_base: np.ndarray, values_cand: np.ndarray, weights: np.ndarray | None = None
) -> Interval:
    """The interval the gate uses for a metric that is a mean of per-example values (..., n)."""
    if metric == "accuracy":
        return matched_proportions(values_base, values_cand)
    return paired_mean(values_base, values_cand, weights)


def matched_proportions(correct_base: np.ndarray, correct_cand: np.ndarray) -> Interval:
    """Agresti-Min interval of accuracy(candidate) - accuracy(baseline); inputs (..., n) booleans."""
    base, cand = np.asarray(correct_base, bool), np.asarray(correct_cand, bool)
    n = base.shape[-1]
    base_only = (base & ~cand).sum(axis=-1).astype(np.float64)
    cand_only = (~base & cand).sum(axis=-1).astype(np.float64)
    return matched_proportions_from_counts(base_only, cand_only, n)


def matched_proportions_from_counts(base_only, cand_only, n: int) -> Interval:
    """The same from the discordant counts: examples only the baseline / only the candidate gets right."""
    b, c = np.asarray(base_only, np.float64) + 0.5, np.asarray(cand_only, np.float64) + 0.5
    n_adj = n + 2.0  # half an example added to each of the four cells
    center = (c - b) / n_adj
    se = np.sqrt(np.maximum((b + c) - (c - b) ** 2 / n_adj, 0.0)) / n_adj
    return Interval(point=(c - b) / n, center=center, se=se, df=np.inf, method="agresti-min")


def paired_mean(values_base: np.ndarray, values_cand: np.ndarray, weights: np.ndarray | None = None) -> Interval:
    """Paired t interval of mean(candidate) - mean(baseline) of per-example values (..., n).

    With `weights` (e.g. positions per lm window) the metric is sum(w x) / sum(w), and the
    standard error is the linearised one: sqrt(n / (n - 1) * sum(w_i^2 (d_i - D)^2)) / sum(w),
    which is the paired t's sd / sqrt(n) when all weights are equal.
    """
    d = np.asarray(values_cand, np.float64) - np.asarray(values_base, np.float64)
    n = d.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        if weights is None:
            point = d.mean(axis=-1)
            se = d.std(axis=-1, ddof=1) / np.sqrt(n) if n > 1 else np.full(point.shape, np.nan)
        else:
            w = np.broadcast_to(np.asarray(weights, np.float64), d.shape)
            total = w.sum(axis=-1)
            point = (w * d).sum(axis=-1) / total
            resid = w * (d - point[..., None])
            se = np.sqrt(n / (n - 1) * (resid**2).sum(axis=-1)) / total if n > 1 else np.full(np.shape(point), np.nan)
    return Interval(point=point, center=point, se=se, df=max(n - 1, 1), method="paired-t")


def bootstrap_se(point: float, replicates: np.ndarray, n: int) -> Interval:
    """Normal-theory interval from the paired bootstrap's spread: se = sd(replicates) sqrt(n / (n - 1))."""
    r = np.asarray(replicates, np.float64)
    r = r[np.isfinite(r)]
    se = float(np.std(r, ddof=1) * np.sqrt(n / (n - 1))) if len(r) > 1 and n > 1 else float("nan")
    return Interval(point=point, center=point, se=se, df=max(n - 1, 1), method="bootstrap-se")
