"""The retraining orchestration with stand-in steps: order, promote/reject by the gate, audit entries."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trainwise.config import MonitorConfig
from trainwise.monitor.retrain import RetrainSteps, run_retraining
from trainwise.monitor.triggers import evaluate_triggers


def _steps(calls: list, gate_passes: bool) -> RetrainSteps:
    def train(path):
        calls.append(("train", len(pd.read_parquet(path))))
        return path.parent / "run"

    return RetrainSteps(
        train=train,
        evaluate=lambda run: calls.append(("evaluate", run.name)) or run / "eval",
        register=lambda run: calls.append(("register",)) or "7",
        gate=lambda ev: calls.append(("gate",)) or (gate_passes, [] if gate_passes else ["accuracy fell by 0.04 > 0.01"]),
        promote=lambda version, reason: calls.append(("promote", version)),
        audit=lambda event: calls.append(("audit", event["event"])),
    )


@pytest.mark.parametrize("gate_passes,decision", [(True, "promoted"), (False, "rejected")])
def test_fired_trigger_trains_gates_and_promotes_or_rejects(tmp_path, gate_passes, decision):
    fired = evaluate_triggers({"columns": [], "window_too_small": False}, MonitorConfig(trigger_max_age_days=1), 2.0)
    calls: list = []
    window = pd.DataFrame({"x": range(50)})
    record = run_retraining(fired, window, tmp_path, _steps(calls, gate_passes))
    assert record["decision"] == decision
    expected = [("audit", "retrain_started"), ("train", 50), ("evaluate", "run"), ("register",), ("gate",)]
    expected += [("promote", "7")] if gate_passes else []
    assert calls == expected + [("audit", f"retrain_{decision}")]
    assert json.loads((tmp_path / "retraining.json").read_text())["decision"] == decision


def test_nothing_runs_without_a_fired_trigger(tmp_path):
    calls: list = []
    assert run_retraining([], pd.DataFrame({"x": [1]}), tmp_path, _steps(calls, True))["decision"] == "none"
    assert calls == []
