"""Glue between the drift monitor and trainwise.monitor.performance: which columns hold what.

A table carries predictions as `prediction` (the predicted class) and/or `prob_<class>` columns (the
prediction log's layout, trainwise.monitor.logschema; evaluation's `pred` is renamed to it on
reading), and labels, when they have arrived, in `label`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainwise.monitor.performance import (
    PROB_PREFIX,
    ConfidenceCalibrator,
    estimate_performance,
    predicted_classes,
    prob_columns,
    realised_performance,
)


class PerformanceState:
    """What the reference says about the model: its accuracy and its confidence calibration."""

    def __init__(self, label_column: str = "label", pred_column: str = "prediction", seed: int = 0):
        self.label_column = label_column
        self.pred_column = pred_column
        self.seed = seed

    def fit(self, reference: pd.DataFrame) -> "PerformanceState":
        self.probs_ = prob_columns(reference.columns)
        self.classes_ = [c[len(PROB_PREFIX) :] for c in self.probs_]
        self.has_predictions_ = bool(self.probs_) or self.pred_column in reference.columns
        labelled, self.reference_correct_ = self._correct(reference) if self.has_predictions_ else (None, None)
        self.calibrator_ = None
        if self.probs_:
            probs, pred_index = self._probs(reference)
            top = probs[np.arange(len(probs)), pred_index]
            # calibrated on the labelled rows only: a prediction log's rows get labels late or never
            self.calibrator_ = ConfidenceCalibrator(self.seed).fit(
                top[labelled] if labelled is not None else top, self.reference_correct_
            )
            self.reference_estimate_ = estimate_performance(self.calibrator_, probs, pred_index, self.classes_)
        return self

    def _correct(self, frame: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(which rows have a label, whether the prediction was right on each of them); (None,
        None) when no row has one."""
        if self.label_column not in frame.columns:
            return None, None
        labelled = frame[self.label_column].notna().to_numpy()
        if not labelled.any():
            return None, None
        pred = predicted_classes(frame, self.probs_, self.pred_column)
        return labelled, (pred[labelled] == frame[self.label_column].astype(str).to_numpy()[labelled])

    def _probs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        probs = frame[self.probs_].to_numpy(dtype=np.float64)
        pred = predicted_classes(frame, self.probs_, self.pred_column)
        index = {c: i for i, c in enumerate(self.classes_)}
        pred_index = np.array([index.get(p, -1) for p in pred])
        fallback = probs.argmax(axis=1)  # a predicted class without a prob column: use the top one
        return probs, np.where(pred_index < 0, fallback, pred_index)

    def check(self, current: pd.DataFrame) -> dict | None:
        if not self.has_predictions_:
            return None
        out: dict = {}
        _, correct = self._correct(current)
        if correct is not None:
            out["realised"] = realised_performance(self.reference_correct_, correct)
        if self.calibrator_ is not None:
            probs, pred_index = self._probs(current)
            est = estimate_performance(self.calibrator_, probs, pred_index, self.classes_)
            ref_acc = (
                float(self.reference_correct_.mean())
                if self.reference_correct_ is not None
                else self.reference_estimate_["accuracy"]
            )
            out["estimated"] = est
            out["estimated_accuracy_drop"] = ref_acc - est["accuracy"]
            # the estimate's interval carried over to the drop (the reference accuracy taken as known)
            out["estimated_accuracy_drop_ci"] = [ref_acc - est["ci_high"], ref_acc - est["ci_low"]]
        return out
