"""Retraining through the gates, when a trigger fires: the order of the steps, not the steps.

`run_retraining` owns what the monitor knows (why it fired, which window to train on, writing
the window and the record atomically) and takes the pipeline's steps as functions, because
training, evaluation, the gate and promotion belong to trainwise.train, trainwise.evaluate and
trainwise.registry. The `--act` flag and the `trainwise watch` loop wire those real functions in;
until then this is exercised with stand-ins (tests/monitor/test_retrain.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from trainwise.rundir import write_atomic, write_json


@dataclass
class RetrainSteps:
    """The pipeline, as functions. Each one raises TrainwiseError on failure."""

    train: Callable[[Path], Path]  # window data file -> run directory of the new model
    evaluate: Callable[[Path], Path]  # run directory -> its eval directory
    register: Callable[[Path], str]  # run directory -> new registry version
    gate: Callable[
        [Path], tuple[str, list[str]]
    ]  # candidate eval directory -> (pass/fail/inconclusive, reasons) against the champion
    promote: Callable[[str, str], None]  # (version, reason) -> moves the champion alias
    audit: Callable[[dict], None]  # records one event in the registry's audit trail


def run_retraining(fired: list, window: pd.DataFrame, work_dir: str | Path, steps: RetrainSteps) -> dict:
    """Train on the window, evaluate, gate against the champion, promote or reject; audit every step.

    Only a gate that *passes* promotes: a failing or an inconclusive one (the window's held-out
    rows were too few to show the new model within tolerance) rejects, and the reasons say what
    would settle it. Returns the record also written to `work_dir/retraining.json`. Nothing runs
    when no trigger fired.
    """
    work = Path(work_dir)
    record: dict = {
        "triggers": [t.to_dict() if hasattr(t, "to_dict") else dict(t) for t in fired],
        "started_unix_s": time.time(),
        "decision": "none",
    }
    if not fired:
        return record
    data_path = work / "window.parquet"
    buf = window.to_parquet(index=False)
    write_atomic(data_path, buf)
    reason = "; ".join(t["reason"] for t in record["triggers"])
    steps.audit({"event": "retrain_started", "reason": reason, "rows": len(window)})
    run_dir = steps.train(data_path)
    eval_dir = steps.evaluate(run_dir)
    version = steps.register(run_dir)
    outcome, gate_reasons = steps.gate(eval_dir)
    verdict = (
        ("pass" if outcome else "fail") if isinstance(outcome, bool) else outcome
    )  # a bool: the older pass/fail contract
    record.update(
        run_dir=str(run_dir),
        eval_dir=str(eval_dir),
        version=version,
        gate_verdict=verdict,
        gate_passed=verdict == "pass",
        gate_reasons=gate_reasons,
    )
    if verdict == "pass":
        steps.promote(version, f"retrained after: {reason}")
        record["decision"] = "promoted"
    else:
        record["decision"] = "rejected"
    steps.audit(
        {
            "event": f"retrain_{record['decision']}",
            "version": version,
            "reason": reason,
            "gate_verdict": verdict,
            "gate_reasons": gate_reasons,
        }
    )
    record["finished_unix_s"] = time.time()
    write_json(work / "retraining.json", record)
    return record
