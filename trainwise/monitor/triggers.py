"""Retraining triggers: a policy (the `monitor.trigger_*` config fields) applied to a drift result.

`evaluate_triggers` is a pure function: the same drift result, policy and model age always give
the same fired triggers, so a watch loop can log why it retrained and a test can check each rule.

>>> from trainwise.config import MonitorConfig
>>> policy = MonitorConfig(trigger_max_age_days=30)
>>> [t.name for t in evaluate_triggers({"columns": []}, policy, model_age_days=45)]
['max_age_days']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainwise.monitor.drift import DriftMonitor


@dataclass(frozen=True)
class FiredTrigger:
    name: str  # drift_columns | dataset_drift | est_accuracy_drop | realised_drop | max_age_days
    reason: str
    value: float
    threshold: float

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_triggers(drift_result: dict, policy, model_age_days: float | None = None) -> list[FiredTrigger]:
    """The triggers of `policy` (a MonitorConfig) that fire on one window's drift.json dictionary.

    Like a column's drift (its effect above a threshold and its test significant), an accuracy
    drop fires only when it is judged on enough rows (`policy.min_window_rows`: of the window for
    the label-free estimate, of its labelled rows for the realised drop), its value exceeds the
    threshold, and its confidence interval lies above zero (the window is shown worse, not only
    noisier). A window too small to judge fires no drift or accuracy trigger.
    """
    # Over 60 lines on purpose: one block per trigger kind (drift, accuracy, age), each gated the same way, read in
    # the order the policy documents them
    fired: list[FiredTrigger] = []
    judged = not drift_result.get("window_too_small", False)
    watched = list(policy.trigger_columns)
    if judged and "*" in watched and drift_result.get("dataset_drift"):
        n = sum(c.get("drift", False) for c in drift_result.get("columns", []))
        fired.append(
            FiredTrigger("dataset_drift", f"dataset-level drift ({drift_result.get('verdict', '')})", float(n), 1.0)
        )
    drifted = [c["name"] for c in drift_result.get("columns", []) if c.get("drift") and c["name"] in watched]
    if judged and drifted:
        fired.append(
            FiredTrigger("drift_columns", f"drift in watched columns: {', '.join(drifted)}", float(len(drifted)), 1.0)
        )
    perf = drift_result.get("performance") or {}
    est = _shown_drop(
        perf.get("estimated_accuracy_drop"),
        perf.get("estimated_accuracy_drop_ci"),
        (perf.get("estimated") or {}).get("n"),
        policy.trigger_est_accuracy_drop,
        policy.min_window_rows,
    )
    if judged and est:
        fired.append(
            FiredTrigger(
                "est_accuracy_drop",
                f"estimated accuracy dropped by {est[0]:.3f} (label-free; 95% CI {est[1]:.3f} to {est[2]:.3f})",
                est[0],
                policy.trigger_est_accuracy_drop,
            )
        )
    realised = perf.get("realised") or {}
    drop = realised.get("accuracy_drop") or {}
    real = _shown_drop(
        drop.get("value"),
        [drop.get("ci_low"), drop.get("ci_high")],
        (realised.get("current") or {}).get("n"),
        policy.trigger_realised_drop,
        policy.min_window_rows,
    )
    if judged and real:
        fired.append(
            FiredTrigger(
                "realised_drop",
                f"realised accuracy dropped by {real[0]:.3f} on {realised['current']['n']} labelled rows "
                f"(95% CI {real[1]:.3f} to {real[2]:.3f})",
                real[0],
                policy.trigger_realised_drop,
            )
        )
    if policy.trigger_max_age_days > 0 and model_age_days is not None and model_age_days > policy.trigger_max_age_days:
        fired.append(
            FiredTrigger(
                "max_age_days",
                f"model is {model_age_days:.1f} days old",
                float(model_age_days),
                policy.trigger_max_age_days,
            )
        )
    return fired


def _shown_drop(value, ci, n_rows, threshold: float, min_rows: int) -> tuple[float, float, float] | None:
    """(drop, ci low, ci high) when the rule is on and the drop is shown on enough rows, else None."""
    if threshold <= 0 or value is None or not ci or None in ci or n_rows is None:
        return None
    if n_rows < min_rows or value <= threshold or ci[0] <= 0:
        return None
    return float(value), float(ci[0]), float(ci[1])


def build_monitor(cfg, seed: int = 0):
    """A DriftMonitor with the parameters of a MonitorConfig section."""

    return DriftMonitor(
        alpha=cfg.alpha,
        min_wasserstein_sd=cfg.min_wasserstein_sd,
        min_js_distance=cfg.min_js_distance,
        min_auc=cfg.min_auc,
        min_window_rows=cfg.min_window_rows,
        n_resamples=cfg.n_resamples,
        max_calibration_rows=cfg.max_calibration_rows,
        multivariate=cfg.multivariate,
        multivariate_rows=cfg.multivariate_rows,
        label_column=cfg.label_column,
        ignore_columns=tuple(cfg.ignore_columns),
        seed=seed,
    )
