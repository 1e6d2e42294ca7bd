"""Each retraining trigger fires exactly when its rule says, and not on windows too small to judge."""

from __future__ import annotations

from trainwise.config import MonitorConfig, load_config
from trainwise.monitor.triggers import evaluate_triggers


def _result(drifted=(), too_small=False, est_drop=None, realised_drop=None, dataset_drift=None, n=500):
    perf = {}
    if est_drop is not None:  # the fields PerformanceState.check writes
        perf.update(
            estimated_accuracy_drop=est_drop,
            estimated_accuracy_drop_ci=[est_drop - 0.02, est_drop + 0.02],
            estimated={"n": n},
        )
    if realised_drop is not None:
        perf["realised"] = {
            "current": {"n": n},
            "accuracy_drop": {"value": realised_drop, "ci_low": realised_drop - 0.02, "ci_high": realised_drop + 0.02},
        }
    return {
        "window_too_small": too_small,
        "dataset_drift": bool(drifted) if dataset_drift is None else dataset_drift,
        "columns": [{"name": n, "drift": True} for n in drifted] + [{"name": "quiet", "drift": False}],
        "performance": perf,
        "verdict": "v",
    }


def test_default_policy_fires_nothing():
    assert evaluate_triggers(_result(drifted=["age"], est_drop=0.5, realised_drop=0.5), MonitorConfig(), 1000) == []


def test_watched_column_drift_fires_and_unwatched_does_not():
    policy = MonitorConfig(trigger_columns=["age"])
    fired = evaluate_triggers(_result(drifted=["age", "income"]), policy)
    assert [(t.name, t.value) for t in fired] == [("drift_columns", 1.0)]
    assert "age" in fired[0].reason and "income" not in fired[0].reason
    assert evaluate_triggers(_result(drifted=["income"]), policy) == []


def test_star_means_dataset_drift_and_too_small_windows_never_fire():
    policy = MonitorConfig(trigger_columns=["*"])
    assert [t.name for t in evaluate_triggers(_result(drifted=["income"]), policy)] == ["dataset_drift"]
    assert evaluate_triggers(_result(drifted=["income"], too_small=True), policy) == []


def test_accuracy_drops_and_age_use_strict_thresholds():
    policy = load_config(
        None,
        [
            "monitor.trigger_est_accuracy_drop=0.05",
            "monitor.trigger_realised_drop=0.03",
            "monitor.trigger_max_age_days=30",
        ],
    ).monitor
    fired = evaluate_triggers(_result(est_drop=0.06, realised_drop=0.031), policy, model_age_days=31)
    assert [t.name for t in fired] == ["est_accuracy_drop", "realised_drop", "max_age_days"]
    assert evaluate_triggers(_result(est_drop=0.05, realised_drop=0.01), policy, model_age_days=30) == []
