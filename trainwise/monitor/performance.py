"""Model performance in a window: realised where labels exist, estimated from probabilities where not.

The label-free estimate follows the idea of NannyML's confidence-based performance estimation
(CBPE): once the model's confidence is calibrated, the expected share of correct predictions in a
window is the mean calibrated confidence, and the expected confusion matrix is the sum of the
calibrated class probabilities per predicted class. Calibration is learned on the labelled
reference with isotonic regression of "prediction was correct" on the top-class probability
(Zadrozny & Elkan, 2002). Its uncertainty has two parts: the sampling spread of a sum of Bernoulli
outcomes (Poisson-binomial variance) and the spread of the calibration itself (bootstrap of the
reference). It is only valid under covariate shift: if P(y | x) changes, no label-free estimate is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

PROB_PREFIX = "prob_"
N_CALIBRATION_BOOTSTRAPS = 30
MAX_CALIBRATION_ROWS = 50_000


def prob_columns(columns) -> list[str]:
    return [c for c in columns if str(c).startswith(PROB_PREFIX)]


def predicted_classes(frame: pd.DataFrame, probs: list[str], pred_column: str) -> np.ndarray:
    if pred_column in frame.columns:
        return frame[pred_column].astype(str).to_numpy()
    classes = np.array([c[len(PROB_PREFIX) :] for c in probs])
    return classes[frame[probs].to_numpy(dtype=np.float64).argmax(axis=1)]


def accuracy_with_ci(correct: np.ndarray, confidence: float = 0.95) -> dict:
    """Accuracy with a Wilson score interval (statsmodels)."""
    # lazy: statsmodels is heavy and only needed for this interval/correction
    from statsmodels.stats.proportion import proportion_confint

    n, k = len(correct), int(np.sum(correct))
    lo, hi = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    return {"accuracy": k / n, "ci_low": float(lo), "ci_high": float(hi), "n": n}


def realised_performance(ref_correct: np.ndarray | None, cur_correct: np.ndarray, confidence: float = 0.95) -> dict:
    """Realised accuracy of the window, and its drop from the reference with a Newcombe interval."""
    out = {"current": accuracy_with_ci(cur_correct, confidence)}
    if ref_correct is not None and len(ref_correct):
        # lazy: statsmodels is heavy and only needed for this interval/correction
        from statsmodels.stats.proportion import confint_proportions_2indep

        out["reference"] = accuracy_with_ci(ref_correct, confidence)
        lo, hi = confint_proportions_2indep(
            int(ref_correct.sum()),
            len(ref_correct),
            int(cur_correct.sum()),
            len(cur_correct),
            method="newcomb",
            alpha=1 - confidence,
        )
        out["accuracy_drop"] = {
            "value": out["reference"]["accuracy"] - out["current"]["accuracy"],
            "ci_low": float(lo),
            "ci_high": float(hi),
        }
    return out


class ConfidenceCalibrator:
    """Maps top-class probability to the probability that the prediction is correct (fit on labels)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, top_prob: np.ndarray, correct: np.ndarray | None) -> "ConfidenceCalibrator":
        # lazy: scikit-learn is heavy and only needed by this test
        from sklearn.isotonic import IsotonicRegression

        self.fitted_on_labels_ = correct is not None
        self.models_ = []
        if correct is None:  # no labels: trust the model's own probabilities, and say so
            return self
        rng = np.random.default_rng(self.seed)
        if len(top_prob) > MAX_CALIBRATION_ROWS:
            keep = rng.choice(len(top_prob), MAX_CALIBRATION_ROWS, replace=False)
            top_prob, correct = top_prob[keep], correct[keep]
        n = len(top_prob)
        for b in range(N_CALIBRATION_BOOTSTRAPS + 1):
            idx = np.arange(n) if b == 0 else rng.integers(0, n, n)  # model 0 is the point estimate
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            self.models_.append(iso.fit(top_prob[idx], correct[idx].astype(np.float64)))
        return self

    def transform(self, top_prob: np.ndarray) -> np.ndarray:
        """(1 + bootstraps, N) calibrated confidences; one row (the raw probability) without labels."""
        if not self.models_:
            return top_prob[None, :]
        return np.vstack([m.predict(top_prob) for m in self.models_])


def estimate_performance(
    calibrator: ConfidenceCalibrator,
    probs: np.ndarray,
    pred_index: np.ndarray,
    classes: list[str],
    confidence: float = 0.95,
) -> dict:
    """CBPE-style expected accuracy and expected confusion matrix, with an interval."""
    top_prob = probs[np.arange(len(probs)), pred_index]
    calibrated = calibrator.transform(top_prob)
    point = calibrated[0]
    n = len(point)
    est = float(point.mean())
    sd_sampling = float(np.sqrt(np.sum(point * (1 - point))) / n)
    sd_calibration = float(calibrated[1:].mean(axis=1).std(ddof=1)) if len(calibrated) > 2 else 0.0
    sd = float(np.hypot(sd_sampling, sd_calibration))
    z = float(norm.ppf(0.5 + confidence / 2))
    # Expected confusion matrix (rows: true class, columns: predicted class): a row is correct with
    # its calibrated confidence; the rest is spread over the other classes by their model probabilities.
    others = probs.copy()
    others[np.arange(n), pred_index] = 0.0
    others = others / np.maximum(others.sum(axis=1, keepdims=True), 1e-12) * (1 - point)[:, None]
    others[np.arange(n), pred_index] = point
    k = len(classes)
    matrix = np.zeros((k, k))
    for j in range(k):
        matrix[:, j] = others[pred_index == j].sum(axis=0)
    return {
        "accuracy": est,
        "ci_low": max(0.0, est - z * sd),
        "ci_high": min(1.0, est + z * sd),
        "sd_sampling": sd_sampling,
        "sd_calibration": sd_calibration,
        "n": n,
        "calibrated_on_labels": calibrator.fitted_on_labels_,
        "expected_confusion_matrix": {"classes": classes, "matrix": matrix.round(3).tolist()},
    }
