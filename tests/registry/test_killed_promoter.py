"""A promoter killed in the middle of a move: the next registry command makes the audit trail agree
with the alias again, and says so.

The audit entry (the intent) is written before the alias moves and marked FINISHED after. On the
code before this, a kill -9 between the alias move and that mark left the entry RUNNING for ever:
`history` then disagreed with the alias ("moved outside trainwise?") and `rollback`'s stack
ignored the move. The kills here are real SIGKILLs of a `trainwise` process at the awkward moment
(TRAINWISE_REGISTRY_FAULT, a test-only hook in registry/promote.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from mlflow import MlflowClient


@pytest.fixture(scope="module")
def versions(store, runs):
    """`killed` v1 (champion) and v2, registered from real run directories."""
    from trainwise.registry import promote, register_run

    for key in ("good", "good_seed1"):
        register_run(runs(key), "killed")
    promote("killed", "1", "champion")
    return store


def killed_at(point: str, *argv: str) -> None:
    """Run `trainwise ARGV` in its own process, killed with SIGKILL at `point` of the move."""
    env = {**os.environ, "TRAINWISE_REGISTRY_FAULT": point}
    proc = subprocess.run(
        [sys.executable, "-m", "trainwise.cli", *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)


def history(cli) -> tuple[dict, str]:
    code, out, err = cli("history", "killed", "--json")
    assert code == 0, err
    return json.loads(out), err


def test_a_promoter_killed_after_the_alias_moved_is_recorded_as_completed(versions, cli):
    killed_at("after-alias", "promote", "killed", "2", "--force", "--reason", "hotfix")
    client = MlflowClient(versions)
    assert client.get_registered_model("killed").aliases == {"champion": 2}  # the alias moved ...
    [unfinished] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("trainwise-audit/killed").experiment_id])
        if r.info.status == "RUNNING"
    ]  # ... and its entry was left unfinished
    trail, err = history(cli)
    assert "reconciled audit entry 2 (force champion: v1 -> v2): completed" in err and "warning" not in err, err
    last = trail["entries"][-1]
    assert (last["run_id"], last["status"], last["reconciled"], last["to_version"]) == (
        unfinished.info.run_id,
        "FINISHED",
        "completed",
        "2",
    )
    assert "champion held v2" in last["reconciled_note"]
    assert trail["problems"] == []  # the trail agrees with the alias: v2 holds it
    code, out, err = cli("history", "killed")
    assert "[FINISHED, reconciled: completed]" in out.splitlines()[-1] and "reconciled" not in err  # settled once


def test_a_rollback_killed_before_the_alias_moved_is_recorded_as_rolled_back(versions, cli):
    killed_at("before-alias", "rollback", "killed", "--reason", "bad canary")
    client = MlflowClient(versions)
    assert client.get_registered_model("killed").aliases == {"champion": 2}  # the rollback never happened
    code, out, err = cli("rollback", "killed", "--reason", "again")  # the next command reconciles first, then moves
    assert code == 0 and out.startswith("killed@champion: v2 -> v1 (rollback; audit entry 4)"), (out, err)
    trail, err = history(cli)
    assert [(e["seq"], e["action"], e["status"], e["reconciled"]) for e in trail["entries"]] == [
        (1, "promote", "FINISHED", ""),
        (2, "force", "FINISHED", "completed"),
        (3, "rollback", "FAILED", "rolled back"),
        (4, "rollback", "FINISHED", ""),
    ]
    assert trail["problems"] == [] and client.get_registered_model("killed").aliases == {"champion": 1}
