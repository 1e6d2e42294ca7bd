"""Calibration: expected calibration error (ECE) in its common variants, and reliability bins.

The top-label view of Guo et al. 2017 ("On Calibration of Modern Neural Networks"): the confidence
of a prediction is its largest class probability, and a bin's gap is |accuracy - mean confidence|.
Equal-width bins use scikit-learn's `calibration_curve` rule (bin b holds (edge_b, edge_b+1], found
by `searchsorted`), so the per-bin accuracies and confidences equal sklearn's (tested). Equal-mass
bins (Nixon et al. 2019, "Measuring Calibration in Deep Learning") put the same number of
predictions in each bin, which is less biased when confidences pile up near 1.
"""

from __future__ import annotations

import numpy as np

N_BINS = 15  # Guo et al. 2017 use 15 equal-width bins


def equal_width_bin(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index in [0, n_bins) of each confidence, as sklearn's calibration_curve assigns it."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], confidence)


def equal_mass_bin(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index by rank: each bin holds n / n_bins predictions (ties broken by order)."""
    order = np.argsort(confidence, kind="stable")
    bins = np.empty(len(confidence), dtype=np.int64)
    bins[order] = np.arange(len(confidence)) * n_bins // max(len(confidence), 1)
    return bins


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS, strategy: str = "uniform"
) -> dict:
    """Per-bin count, mean confidence and accuracy (NaN for empty bins), for ECE and the diagram."""
    bins = equal_width_bin(confidence, n_bins) if strategy == "uniform" else equal_mass_bin(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"count": count, "confidence": conf_sum / count, "accuracy": correct_sum / count}


def ece_from_bins(count: np.ndarray, confidence: np.ndarray, accuracy: np.ndarray) -> dict[str, float]:
    """l1 (the usual ECE), l2 (root mean squared gap) and max gap over non-empty bins."""
    used = count > 0
    w = count[used] / count[used].sum()
    gap = np.abs(accuracy[used] - confidence[used])
    return {"l1": float(np.sum(w * gap)), "l2": float(np.sqrt(np.sum(w * gap**2))), "max": float(gap.max())}


def calibration_metrics(prob: np.ndarray, label: np.ndarray, n_bins: int = N_BINS) -> dict:
    """ece, ece_l2, ece_max (equal width), ece_equal_mass, and the reliability table for the report.

    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]); y = np.array([0, 1, 1])
    >>> round(calibration_metrics(p, y)["ece"], 4)  # one per bin, gaps 0.3, 0.8, 0.1: (0.3 + 0.8 + 0.1) / 3
    0.4
    """
    confidence = prob.max(axis=1)
    correct = prob.argmax(axis=1) == label
    uniform = reliability_bins(confidence, correct, n_bins, "uniform")
    mass = reliability_bins(confidence, correct, n_bins, "quantile")
    e = ece_from_bins(**uniform)
    return {
        "ece": e["l1"],
        "ece_l2": e["l2"],
        "ece_max": e["max"],
        "ece_equal_mass": ece_from_bins(**mass)["l1"],
        "reliability": {
            "n_bins": n_bins,
            "count": uniform["count"].astype(int).tolist(),
            "confidence": [None if np.isnan(v) else float(v) for v in uniform["confidence"]],
            "accuracy": [None if np.isnan(v) else float(v) for v in uniform["accuracy"]],
        },
    }
