"""`trainwise monitor --log` on a log written by the real server, with no renaming of anything.

A registered tabular model (fair@champion) is served in process through uvicorn; 600 rows of the
Fair table are sent over HTTP (4 instances per request), the last 200 with age moved by 3 SD.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.serve.conftest import running_server, serve_settings
from trainwise.serve.predlog import read_prediction_log
from trainwise.workloads.tabular import load_fair

PER_REQUEST = 4
METADATA = (
    "timestamp",
    "request_id",
    "instance",
    "model_version",
    "latency_ms",
)  # literal: the test must run on older code too
INPUTS = [
    "in_rate_marriage",
    "in_age",
    "in_yrs_married",
    "in_children",
    "in_religious",
    "in_education",
    "in_occupation",
    "in_occupation_husb",
]


def serve_rows(runtime, log_dir, rows: pd.DataFrame, ref: str | None = None) -> list[dict]:
    """POST `rows` to a real server; returns the (request_id, instance, label) keys the log will hold."""
    keys = []
    records = rows.drop(columns=["had_affair"]).to_dict("records")
    with running_server(runtime, serve_settings(log_dir=str(log_dir), log_flush_s=0.05, poll_alias_s=0), ref=ref) as (
        url,
        _,
    ):
        with httpx.Client(timeout=30) as client:
            for start in range(0, len(records), PER_REQUEST):
                r = client.post(f"{url}/v1/predict", json={"instances": records[start : start + PER_REQUEST]})
                assert r.status_code == 200, r.text
                keys += [
                    {
                        "request_id": r.headers["x-request-id"],
                        "instance": i,
                        "label": rows["had_affair"].iloc[start + i],
                    }
                    for i in range(PER_REQUEST)
                ]
    deadline = time.monotonic() + 20
    while len(read_prediction_log(str(log_dir))) < len(rows):  # the server flushed on shutdown
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return keys


def traffic() -> pd.DataFrame:
    fair = load_fair().sample(n=600, random_state=1).reset_index(drop=True)
    fair.loc[400:, "age"] += 3 * fair["age"].std()
    return fair


@pytest.fixture(scope="module")
def served(store, tab_run, tmp_path_factory):
    """(log dir, label keys): the registered champion's real serving log."""
    from trainwise.registry.promote import promote
    from trainwise.registry.versions import register_run
    from trainwise.serve.runtime import load_runtime

    register_run(tab_run, "fair")
    promote("fair", 1, "champion", reason="first")
    log_dir = tmp_path_factory.mktemp("served") / "log"
    keys = serve_rows(load_runtime("fair@champion"), log_dir, traffic(), ref="fair@champion")
    return log_dir, keys


def test_real_log_is_monitored_against_the_training_reference(run_cli, served):
    log_dir, _ = served
    code, stdout, err = run_cli("monitor", "--log", log_dir, "--window", "200rows", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["reference"]["source"].startswith("training reference of fair/1")
    assert [w["n_rows"] for w in result["windows"]] == [200, 200, 200]  # no window spent as the reference
    assert [c["name"] for c in result["columns"]] == INPUTS  # request metadata is never a feature
    assert not {c["name"] for c in result["columns"]} & set(METADATA)
    assert {c["name"] for c in result["prediction_columns"]} == {"prediction", "prob_no", "prob_yes"}
    assert all(w["prediction_drift"] is not None for w in result["windows"])
    assert [w["dataset_drift"] for w in result["windows"]] == [False, False, True]
    assert "in_age" in result["windows"][-1]["drifted_columns"]
    assert result["performance"]["estimated"]["calibrated_on_labels"]  # the reference carries true labels
    assert all(w["model_version"] == "fair/1" for w in result["windows"])


def test_summary_names_the_reference(run_cli, served):
    code, stdout, _ = run_cli("monitor", "--log", served[0], "--window", "200rows")
    assert code == 0 and stdout.startswith("reference: training reference of fair/1")


def test_labels_join_on_request_id(run_cli, served, tmp_path):
    log_dir, keys = served
    labels = pd.DataFrame(keys[400:] + [{"request_id": "nobody", "instance": 0, "label": "yes"}])
    labels.to_csv(tmp_path / "labels.csv", index=False)
    code, stdout, err = run_cli(
        "monitor", "--log", log_dir, "--window", "200rows", "--labels", tmp_path / "labels.csv", "--json"
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["labels"] == {
        "file": str(tmp_path / "labels.csv"),
        "n_labels": 201,
        "n_joined": 200,
        "n_outside": 0,
        "n_unknown": 1,
        "unknown_examples": ["nobody"],
    }
    assert [w["realised_accuracy"] is not None for w in result["windows"]] == [False, False, True]
    log = read_prediction_log(str(log_dir)).sort_values(["timestamp", "instance"]).iloc[400:]
    expected = float((log["prediction"].to_numpy() == labels["label"].iloc[:200].to_numpy()).mean())
    assert result["performance"]["realised"]["current"]["accuracy"] == pytest.approx(expected)


def _bad_labels(keys, case: str) -> pd.DataFrame:
    frame = pd.DataFrame(keys[:50])
    if case == "no label column":
        return frame.drop(columns=["label"])
    if case == "no request_id column":
        return frame.rename(columns={"request_id": "id"})
    if case == "duplicates":
        return pd.concat([frame, frame.iloc[:3]])
    return frame.drop(columns=["instance"])  # requests carried 4 instances each


@pytest.mark.parametrize(
    "case,needle",
    [
        ("no label column", "lacks the column 'label'"),
        ("no request_id column", "lacks the column 'request_id'"),
        ("duplicates", "3 request_id/instance keys appear more than once"),
        ("no instance column", "add an 'instance' column"),
    ],
)
def test_bad_labels_files(run_cli, served, tmp_path, case, needle):
    path = tmp_path / "labels.parquet"
    _bad_labels(served[1], case).to_parquet(path)
    code, _, err = run_cli("monitor", "--log", served[0], "--window", "200rows", "--labels", path)
    assert code == 2 and needle in err and str(path) in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_old_serving_log_is_refused_naming_the_column(run_cli, tmp_path):
    log = tmp_path / "old"
    log.mkdir()
    pd.DataFrame(
        {
            "ts": pd.to_datetime(["2026-01-01T00:00:00Z"]),
            "request_id": ["r"],
            "model_version": ["v"],
            "latency_ms": [1.0],
            "input": ['{"age": 1}'],
            "label": ["yes"],
            "probabilities": ['{"yes": 1.0}'],
        }
    ).to_parquet(log / "part-0.parquet")
    code, _, err = run_cli("monitor", "--log", log)
    assert code == 2 and "no 'timestamp' column" in err and "older trainwise serve" in err
    assert len(err.strip().splitlines()) == 1


def test_run_directory_served_directly(run_cli, tab_run, tmp_path):
    """A run directory's version is no registry entry: the error says to give the run as --reference, which then
    works."""
    from trainwise.serve.runtime import load_runtime

    log_dir = tmp_path / "log"
    serve_rows(load_runtime(str(tab_run)), log_dir, traffic().iloc[:200])
    code, _, err = run_cli("monitor", "--log", log_dir, "--window", "100rows")
    assert code == 2 and "--reference RUN_DIR" in err and "not a registered NAME/VERSION" in err
    code, stdout, err = run_cli("monitor", "--log", log_dir, "--window", "100rows", "--reference", tab_run, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["n_reference"] == len(pd.read_parquet(tab_run / "model" / "reference.parquet"))
    assert result["reference"]["source"] == f"--reference {tab_run}" and len(result["windows"]) == 2
    assert np.isfinite(result["performance"]["estimated"]["accuracy"])
