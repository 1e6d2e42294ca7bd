"""End to end on the tabular workload: a trigger fires, a new version is trained, gated against the
champion on the window's held-out rows, and rejected (sabotaged: fail; too few rows to show it
within the default tolerance: inconclusive) or promoted (a gate the rows can settle), with audit
entries."""

from __future__ import annotations

import json

import pytest

from trainwise.cli import main
from trainwise.config import load_config
from trainwise.evaluate.evaluate import evaluate_run
from trainwise.registry.promote import promote
from trainwise.registry.versions import register_run
from trainwise.train.loop import train
from trainwise.workloads.tabular import load_fair

TABULAR = [
    "workload.name=tabular",
    "model.n_layers=1",
    "model.d_model=16",
    "train.steps=60",
    "train.micro_batch_size=64",
    "train.global_batch_size=64",
    "train.lr=1e-2",
    "log.progress=false",
    "log.mlflow=false",
    "train.threads=1",
]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    run = train(load_config(None, TABULAR), root / "champion").run_dir
    evaluate_run(run, with_robustness=False, n_boot=50)
    register_run(run, "fair")
    promote("fair", 1, "champion", reason="first")
    fair = (
        load_fair().rename(columns={"had_affair": "label"}).sample(frac=1.0, random_state=0)
    )  # the table is sorted by target
    fair.iloc[:3000].to_parquet(root / "reference.parquet")
    fair.iloc[3000:].to_parquet(root / "window.parquet")
    yield root
    mp.undo()


def act(root, capsys, out: str, *retrain_sets: str, gate: str | None = None):
    argv = [
        "monitor",
        "--reference",
        str(root / "reference.parquet"),
        "--current",
        str(root / "window.parquet"),
        "--out",
        str(root / out),
        "--act",
        "--model",
        "fair",
        "--set",
        "monitor.trigger_max_age_days=1",
        "--model-age-days",
        "5",
        "--set",
        "monitor.multivariate=false",
    ]
    argv += ["--gate", gate] if gate else []
    for s in ("train.steps=60", *retrain_sets):
        argv += ["--retrain-set", s]
    code = main(argv)
    out_text = capsys.readouterr()
    assert code == 0, out_text.err
    return json.loads((root / out / "drift.json").read_text())["retraining"], out_text.out


def history(capsys):
    assert main(["history", "fair", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_sabotaged_retrain_is_rejected_then_a_good_one_is_promoted(champion, capsys):
    record, text = act(champion, capsys, "bad", "train.lr=0")  # lr 0: the new model never learns
    assert (
        record["decision"] == "rejected"
        and record["version"] == "2"
        and record["gate_verdict"] == "fail"
        and not record["gate_passed"]
    )
    assert "gate fail: rejected" in text and record["gate_reasons"]
    assert main(["history", "fair", "--at", "2100-01-01T00:00:00"]) == 0 and "v1" in capsys.readouterr().out

    # the window's held-out rows cannot show a retrained model within the default 0.005 accuracy tolerance
    record, text = act(champion, capsys, "unsure")
    assert record["decision"] == "rejected" and record["version"] == "3" and record["gate_verdict"] == "inconclusive", (
        record
    )
    assert "gate inconclusive: rejected" in text and any("would settle" in r for r in record["gate_reasons"])

    loose = champion / "loose.toml"  # a tolerance these rows can settle: accuracy drop <= 5 points
    loose.write_text('[[rule]]\nmetric = "accuracy"\ntolerance = 0.05\n')
    record, text = act(champion, capsys, "good", gate=str(loose))
    assert record["decision"] == "promoted" and record["version"] == "4" and record["gate_verdict"] == "pass", record
    entries = history(capsys)
    entries = entries["entries"] if isinstance(entries, dict) else entries
    actions = [e["action"] for e in entries]
    assert (
        actions.count("retrain_started") == 3
        and actions.count("retrain_rejected") == 2
        and "retrain_promoted" in actions
    )
    assert actions.index("promote", 1) > len(actions) - 3  # the only gated promotion is the last retraining's
    assert [e["verdict"] for e in entries if e["action"] == "promote"][-1] == "passed"
