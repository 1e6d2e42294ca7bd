"""Promotion through the real evaluate component's gate: pass promotes, fail and inconclusive refuse
(exit 1 and 3), `--force --reason` and `--accept-inconclusive --reason` override, all audited."""

from __future__ import annotations

import json


def test_real_gate_three_verdicts(store, runs, cli):
    good = runs("good")
    other = runs("good_seed1")  # as good, but 637 examples cannot show it within 0.005
    worse = runs("never_learns")  # lr 0: accuracy 0.71 -> 0.47
    for run_dir in (good, good, other, worse):  # v1, v2 (same model), v3, v4
        assert cli("register", run_dir, "--name", "real")[0] == 0
    assert cli("promote", "real", "1")[0] == 0
    code, out, err = cli("promote", "real", "2")
    assert code == 0 and "gate passed" in out, err

    code, out, err = cli("promote", "real", "3", "--check")
    assert code == 3 and "gate inconclusive" in out and "nothing changed" in out and "would settle" in out
    code, out, err = cli("promote", "real", "3")
    assert code == 3 and "refused" in err and "not shown within tolerance" in err, err
    assert "examples (have 637)" in err and "--accept-inconclusive --reason" in err and "--force --reason" in err
    code, out, err = cli("promote", "real", "3", "--accept-inconclusive")
    assert code == 2 and "needs --reason" in err
    code, out, err = cli("promote", "real", "4")
    assert code == 1 and "does not pass the gate" in err and "accuracy dropped" in err
    code, out, err = cli("promote", "real", "3", "--force", "--reason", "incident 7: ship the retrained model now")
    assert code == 0 and "overridden (inconclusive)" in out, err
    assert cli("rollback", "real", "--reason", "undo the override")[0] == 0
    code, out, err = cli(
        "promote", "real", "3", "--accept-inconclusive", "--reason", "eval set cannot grow; reviewed by QA"
    )
    assert code == 0 and "inconclusive (accepted)" in out, err

    code, out, err = cli("history", "real", "--json")
    h = json.loads(out)
    assert h["problems"] == []
    steps = [(e["action"], e["from_version"], e["to_version"], e["verdict"]) for e in h["entries"]]
    assert steps == [
        ("promote", "", "1", "no-baseline"),
        ("promote", "1", "2", "passed"),
        ("refused", "2", "3", "inconclusive"),
        ("refused", "2", "4", "failed"),
        ("force", "2", "3", "overridden (inconclusive)"),
        ("rollback", "3", "2", "not-gated"),
        ("promote", "2", "3", "inconclusive (accepted)"),
    ]
    assert (
        "would settle" in h["entries"][2]["failures"]
        and h["entries"][-1]["reason"] == "eval set cannot grow; reviewed by QA"
    )
    import mlflow.artifacts

    evidence = mlflow.artifacts.load_dict(f"runs:/{h['entries'][2]['run_id']}/evidence.json")
    assert (
        evidence["comparison"]["verdict"] == "inconclusive"
        and evidence["comparison"]["rules"][0]["upper_bound"] > 0.005
    )


def test_exit_codes_agree_with_the_evaluate_component():
    from trainwise.evaluate.gate import EXIT_CODES as evaluate_codes
    from trainwise.registry.gate import EXIT_CODES

    assert EXIT_CODES == evaluate_codes
