"""The retraining orchestration with stand-in steps: order, promote/reject by the gate, audit entries."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trainwise.config import MonitorConfig
from trainwise.monitor.retrain import RetrainSteps, run_retraining
from trainwise.monitor.triggers import evaluate_triggers

REASONS = {
    "pass": [],
    "fail": ["accuracy fell by 0.04 > 0.01"],
    "inconclusive": [
        "accuracy dropped by 0.002 (bounds straddle tolerance 0.005)",
        "to settle it: about 9,000 examples (have 300)",
    ],
}


def _steps(calls: list, verdict) -> RetrainSteps:
    def train(path):
        calls.append(("train", len(pd.read_parquet(path))))
        return path.parent / "run"

    return RetrainSteps(
        train=train,
        evaluate=lambda run: calls.append(("evaluate", run.name)) or run / "eval",
        register=lambda run: calls.append(("register",)) or "7",
        gate=lambda ev: calls.append(("gate",)) or (verdict, REASONS.get(verdict, [])),
        promote=lambda version, reason: calls.append(("promote", version)),
        audit=lambda event: calls.append(("audit", event["event"])),
    )


@pytest.mark.parametrize(
    "verdict,decision",
    [("pass", "promoted"), ("fail", "rejected"), ("inconclusive", "rejected"), (True, "promoted"), (False, "rejected")],
)  # a bool: the older pass/fail contract
def test_fired_trigger_trains_gates_and_promotes_or_rejects(tmp_path, verdict, decision):
    """Only a gate that passes promotes: an inconclusive verdict rejects like a failure."""
    fired = evaluate_triggers({"columns": [], "window_too_small": False}, MonitorConfig(trigger_max_age_days=1), 2.0)
    calls: list = []
    window = pd.DataFrame({"x": range(50)})
    record = run_retraining(fired, window, tmp_path, _steps(calls, verdict))
    assert record["decision"] == decision
    expected = [("audit", "retrain_started"), ("train", 50), ("evaluate", "run"), ("register",), ("gate",)]
    expected += [("promote", "7")] if decision == "promoted" else []
    assert calls == expected + [("audit", f"retrain_{decision}")]
    written = json.loads((tmp_path / "retraining.json").read_text())
    assert written["decision"] == decision and written["gate_passed"] is (decision == "promoted")
    assert written["gate_verdict"] == {True: "pass", False: "fail"}.get(verdict, verdict)
    assert written["gate_reasons"] == REASONS.get(verdict, [])


def test_nothing_runs_without_a_fired_trigger(tmp_path):
    calls: list = []
    assert run_retraining([], pd.DataFrame({"x": [1]}), tmp_path, _steps(calls, "pass"))["decision"] == "none"
    assert calls == []
