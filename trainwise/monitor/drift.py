"""The drift monitor: fitted once on reference data, then asked about any number of windows.

A column drifts only when two things hold (the fixes for evidently#50, alibi-detect#646 and
evidently#509):
  1. its effect size (Wasserstein distance in reference standard deviations for numeric columns,
     Jensen-Shannon distance for categorical ones) exceeds both a practical minimum and the 95th
     percentile of the effect sizes that no-drift windows of the same size show, found by
     resampling the reference; so a trivial shift in a million rows is no alarm;
  2. its test (Kolmogorov-Smirnov, chi-square) is significant after a Benjamini-Hochberg
     correction across all columns and the multivariate test.
Windows with fewer than `min_window_rows` rows are reported as too small to judge.

Dataset-level false alarms: when nothing drifted, every null hypothesis is true, and then
Benjamini-Hochberg at level alpha rejects any of them with probability at most alpha (FDR equals
the family-wise error under the complete null; Benjamini & Hochberg, 1995); the effect-size gate
can only remove alarms. So `expected_false_alarm_rate` is at most alpha, which benchmarks/
monitor_false_alarms.py checks.

>>> import pandas as pd, numpy as np
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=2000)})
>>> DriftMonitor(multivariate=False).fit(ref).check(ref.sample(500, random_state=1))["dataset_drift"]
False
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainwise.errors import DataError
from trainwise.monitor import logschema as ls
from trainwise.monitor import multivariate as mv
from trainwise.monitor.binned import BinnedColumn, BinnedNumericProfile
from trainwise.monitor.perfcheck import PerformanceState
from trainwise.monitor.performance import prob_columns
from trainwise.monitor.profile import CategoricalProfile, build_profile, infer_kind
from trainwise.monitor.sketch import profile_partition, sample_frame
from trainwise.monitor.stats import benjamini_hochberg

NULL_QUANTILE = 0.95


class DriftMonitor:
    """Reference profile + calibrated thresholds; `fit(reference)` then `check(window)` per window."""

    def __init__(
        self,
        alpha: float = 0.025,
        min_wasserstein_sd: float = 0.1,
        min_js_distance: float = 0.05,
        min_auc: float = 0.55,
        min_window_rows: int = 30,
        n_resamples: int = 200,
        max_calibration_rows: int = 5000,
        multivariate: bool = True,
        multivariate_rows: int = 2000,
        label_column: str = "label",
        pred_column: str = ls.PREDICTION,
        ignore_columns: tuple = ("timestamp", "request_id", "id"),
        column_types: dict | None = None,
        seed: int = 0,
    ):
        self.alpha = alpha
        self.min_wasserstein_sd = min_wasserstein_sd
        self.min_js_distance = min_js_distance
        self.min_auc = min_auc
        self.min_window_rows = min_window_rows
        self.n_resamples = n_resamples
        self.max_calibration_rows = max_calibration_rows
        self.multivariate = multivariate
        self.multivariate_rows = multivariate_rows
        self.label_column = label_column
        self.pred_column = pred_column
        self.ignore_columns = ignore_columns
        self.column_types = column_types
        self.seed = seed

    # ------------------------------------------------------------------------------------------
    def fit(self, reference: pd.DataFrame) -> "DriftMonitor":
        if len(reference) == 0:
            raise DataError("the reference data has no rows; expected a table of reference examples")
        reference = ls.to_monitor_layout(reference)
        self.schema_ = self._tested(reference.columns)
        predictions = {self.pred_column, *prob_columns(reference.columns)}
        types = self.column_types or {}
        self.profiles_ = [build_profile(c, reference[c], infer_kind(reference[c], types.get(c))) for c in self.schema_]
        self.input_profiles_ = [p for p in self.profiles_ if p.name not in predictions]
        self.prediction_profiles_ = [p for p in self.profiles_ if p.name in predictions]
        self.n_reference_ = len(reference)
        rng = np.random.default_rng(self.seed)
        take = rng.choice(len(reference), min(len(reference), self.multivariate_rows), replace=False)
        self.multivariate_reference_ = mv.encode_frame(reference.iloc[np.sort(take)], self.input_profiles_)
        self.performance_ = PerformanceState(self.label_column, self.pred_column, self.seed).fit(reference)
        self.thresholds_ = {}  # calibration size -> {column: null effect quantile}, filled on demand
        self.layout_ = None
        return self

    def fit_profile(self, profile: dict) -> "DriftMonitor":
        """Fit on a reference profile (trainwise.monitor.sketch) instead of its rows: no raw reference needed.

        Numeric columns are judged from binned CDFs (trainwise.monitor.binned states the error that
        adds); the multivariate test and the performance calibration use the profile's row sample.
        """

        n_rows = profile["n_rows"]
        if n_rows == 0:
            raise DataError("the reference profile has no rows; expected a profile of reference examples")
        columns = profile["columns"]
        self.schema_ = self._tested(list(columns))
        predictions = {self.pred_column, *prob_columns(list(columns))}
        self.profiles_ = [
            BinnedNumericProfile(c, columns[c], n_rows)
            if columns[c]["kind"] == "numeric"
            else CategoricalProfile.from_counts(c, columns[c]["counts"], columns[c]["n_missing"] / n_rows)
            for c in self.schema_
        ]
        self.input_profiles_ = [p for p in self.profiles_ if p.name not in predictions]
        self.prediction_profiles_ = [p for p in self.profiles_ if p.name in predictions]
        self.n_reference_ = n_rows
        sample = ls.to_monitor_layout(sample_frame(profile))
        self.multivariate_reference_ = mv.encode_frame(sample.iloc[: self.multivariate_rows], self.input_profiles_)
        self.performance_ = PerformanceState(self.label_column, self.pred_column, self.seed).fit(sample)
        self.thresholds_ = {}
        self.layout_ = {c: {k: v for k, v in columns[c].items() if k in ("kind", "edges")} for c in self.schema_}
        return self

    def check_profile(self, window: dict, performance_rows: pd.DataFrame | None = None) -> dict:
        """Compare one window's profile (profiled on `self.layout_`) with a profile-fitted reference.

        `performance_rows`: the window's prediction, probability and label columns for the
        performance figures; without them they are computed on the profile's row sample.
        """

        self._check_names(list(window["columns"]))
        n = window["n_rows"]
        if n == 0:
            raise DataError("the current window has no rows; expected at least one row to compare")
        too_small = n < self.min_window_rows
        nulls = {} if too_small else self.null_thresholds(n)

        def judge(profile) -> dict:
            col = window["columns"][profile.name]
            missing_share = col["n_missing"] / n
            if profile.kind == "numeric":
                values = BinnedColumn(col)
                return self._judge(profile, values, values.n, missing_share, nulls)
            counts = pd.Series(col["counts"], dtype=np.float64).sort_values(ascending=False, kind="stable")
            return self._judge(profile, counts[counts > 0], int(counts.sum()), missing_share, nulls)

        sample = ls.to_monitor_layout(sample_frame(window))
        rows = sample if performance_rows is None else ls.to_monitor_layout(performance_rows)
        return self._result(n, too_small, judge, lambda: self._domain_test(sample), rows)

    def null_thresholds(self, n_rows: int) -> dict[str, float]:
        """Per-column 95th percentile of no-drift effect sizes for a window of `n_rows` (cached).

        Two-sample statistics at sizes m and n vary like one-sample ones at n m / (n + m), so the
        reference is resampled at that effective size, at most `max_calibration_rows`; beyond that
        the quantile is scaled by sqrt(k / n_eff), the rate at which these distances shrink.
        """
        n_eff = n_rows * self.n_reference_ / (n_rows + self.n_reference_)
        k = int(min(max(round(n_eff), 1), self.max_calibration_rows))
        if k not in self.thresholds_:
            rng = np.random.default_rng([self.seed, k])
            uniforms = np.sort(rng.random((self.n_resamples, k)), axis=1)
            self.thresholds_[k] = {
                p.name: float(
                    np.quantile(
                        p.null_effects(uniforms) if p.kind == "numeric" else p.null_effects(k, self.n_resamples, rng),
                        NULL_QUANTILE,
                    )
                )
                for p in self.profiles_
                if p.n > 0
            }
        scale = np.sqrt(k / n_eff) if n_eff > k else 1.0
        return {name: q * scale for name, q in self.thresholds_[k].items()}

    # ------------------------------------------------------------------------------------------
    def _tested(self, columns) -> list[str]:
        """The columns tested, as the log schema defines them: request metadata never; with `in_`
        columns (the log's layout) exactly those plus prediction and probabilities; in a plain
        table every column but the ignored ones and the label."""
        roles = ls.column_roles(columns)
        skip = set(self.ignore_columns) | set(ls.METADATA) | {self.label_column}
        if roles["inputs"]:
            keep = set(roles["inputs"]) | set(roles["prediction"]) | set(roles["probabilities"]) | {self.pred_column}
            return [c for c in columns if c in keep and c not in skip]
        return [c for c in columns if c not in skip]

    def check(self, current: pd.DataFrame) -> dict:
        """Compare one window with the reference; returns the drift.json dictionary."""
        current = ls.to_monitor_layout(current)
        self._check_schema(current)
        if self.layout_ is not None:  # fitted on a profile: the window is judged as a profile too
            window = profile_partition(current[list(self.layout_)], self.layout_, self.multivariate_rows, ())
            return self.check_profile(window, current)
        n = len(current)
        if n == 0:
            raise DataError("the current window has no rows; expected at least one row to compare")
        too_small = n < self.min_window_rows
        nulls = {} if too_small else self.null_thresholds(n)
        return self._result(
            n,
            too_small,
            lambda p: self._column(p, current[p.name], nulls),
            lambda: self._multivariate(current),
            current,
        )

    def _result(self, n: int, too_small: bool, judge, multivariate, performance_rows: pd.DataFrame) -> dict:
        inputs = [judge(p) for p in self.input_profiles_]
        preds = [judge(p) for p in self.prediction_profiles_]
        multi = None if too_small or not self.multivariate or not self.input_profiles_ else multivariate()
        family = inputs + ([multi] if multi else [])
        self._decide(family)
        self._decide(preds)
        result = {
            "n_reference": self.n_reference_,
            "n_current": n,
            "window_too_small": too_small,
            "dataset_drift": None if too_small else any(c["drift"] for c in family),
            "expected_false_alarm_rate": self.alpha,
            "alpha": self.alpha,
            "verdict": self._verdict(too_small, inputs, multi, n),
            "columns": inputs,
            "multivariate": multi,
            "prediction_drift": None if too_small or not preds else any(c["drift"] for c in preds),
            "prediction_columns": preds,
        }
        result["performance"] = self.performance_.check(performance_rows)
        return result

    def _check_names(self, names: list[str]) -> None:
        cur = self._tested(names)
        missing = [c for c in self.schema_ if c not in cur]
        extra = [c for c in cur if c not in self.schema_]
        if missing or extra:
            parts = ([f"missing from current: {', '.join(map(str, missing))}"] if missing else []) + (
                [f"not in reference: {', '.join(map(str, extra))}"] if extra else []
            )
            raise DataError(
                f"reference and current have different columns ({'; '.join(parts)}); expected the same schema"
            )

    def _check_schema(self, current: pd.DataFrame) -> None:
        self._check_names(list(current.columns))
        for p in self.profiles_:
            if p.kind == "numeric" and not (
                pd.api.types.is_numeric_dtype(current[p.name]) or current[p.name].isna().all()
            ):
                raise DataError(
                    f"column {p.name!r} is numeric in the reference but {current[p.name].dtype} in current; "
                    "expected numbers"
                )

    def _column(self, profile, values: pd.Series, nulls: dict) -> dict:
        window, missing_share = profile.window_values(values)
        n_valid = int(len(window) if profile.kind == "numeric" else window.sum())
        return self._judge(profile, window, n_valid, missing_share, nulls)

    def _judge(self, profile, window, n_valid: int, missing_share: float, nulls: dict) -> dict:
        out = {
            "name": profile.name,
            "type": profile.kind,
            "test": profile.test,
            "effect_measure": profile.effect_measure,
            "n_ref": profile.n,
            "n_cur": n_valid,
            "missing_share_ref": profile.missing_share,
            "missing_share_cur": missing_share,
            "effect_size": None,
            "p_value": None,
            "drift": False,
        }
        if profile.n == 0 or n_valid < self.min_window_rows or not nulls:
            out["status"] = "too_small" if profile.n > 0 else "empty_reference"
            return out
        out.update(profile.compare(window))
        practical = self.min_wasserstein_sd if profile.kind == "numeric" else self.min_js_distance
        out.update(
            status="ok",
            practical_threshold=practical,
            null_threshold=nulls[profile.name],
            threshold=max(practical, nulls[profile.name]),
            plot=profile.plot_shares(window),
        )
        return out

    def _multivariate(self, current: pd.DataFrame) -> dict:
        rng = np.random.default_rng([self.seed, len(current)])
        take = rng.choice(len(current), min(len(current), self.multivariate_rows), replace=False)
        return self._domain_test(current.iloc[np.sort(take)])

    def _domain_test(self, rows: pd.DataFrame) -> dict:
        cur_x = mv.encode_frame(rows.iloc[: self.multivariate_rows], self.input_profiles_)
        mask = np.array([p.kind == "categorical" for p in self.input_profiles_])
        r = mv.domain_classifier_test(self.multivariate_reference_, cur_x, mask, self.seed)
        return {
            "name": "(multivariate)",
            "type": "multivariate",
            "test": "domain_classifier_auc",
            "effect_measure": "auc",
            "effect_size": r["auc"],
            "p_value": r["p_value"],
            "status": "ok",
            "practical_threshold": self.min_auc,
            "null_threshold": r["null_auc_q95"],
            "threshold": max(self.min_auc, r["null_auc_q95"]),
            "n_ref": r["n_ref"],
            "n_cur": r["n_cur"],
            "drift": False,
        }

    def _decide(self, family: list[dict]) -> None:
        """Benjamini-Hochberg over the family's p-values, then the effect-size gate."""
        judged = [c for c in family if c.get("status") == "ok"]
        reject = benjamini_hochberg(np.array([c["p_value"] for c in judged], dtype=np.float64), self.alpha)
        for c, r in zip(judged, reject, strict=True):
            c["significant"] = bool(r)
            c["effect_passes"] = bool(c["effect_size"] > c["threshold"])
            c["drift"] = c["significant"] and c["effect_passes"]

    def _verdict(self, too_small: bool, inputs: list[dict], multi: dict | None, n: int) -> str:
        """One sentence; columns and the multivariate test are counted apart (the test is not a column)."""
        if too_small:
            return f"window of {n} rows is too small to judge (minimum {self.min_window_rows})"
        drifted = [c["name"] for c in inputs if c["drift"]]
        rate = f"expected false-alarm rate <= {self.alpha:.1%}"
        columns = (
            f"drift in {len(drifted)} of {len(inputs)} columns ({', '.join(drifted)})"
            if drifted
            else f"no drift in {len(inputs)} columns"
        )
        if multi is None:
            return f"{columns}; {rate}"
        auc = (
            f"domain-classifier AUC {multi['effect_size']:.3f}"
            if multi.get("effect_size") is not None
            else "domain classifier"
        )
        if multi["drift"]:
            test = (
                f"and in the multivariate test ({auc})" if drifted else f"but the multivariate test finds drift ({auc})"
            )
        else:
            test = f"not in the multivariate test ({auc})" if drifted else f"nor in the multivariate test ({auc})"
        return f"{columns} {test}; {rate}"
