"""Serve -> monitor -> retrain -> hot swap, on a real server's prediction log, as a user runs it.

A tabular model is trained, registered and promoted to champion (temporary MLflow sqlite store);
`trainwise serve fair@champion` runs as its own process with serve.log_dir set; real HTTP traffic
drawn from the Fair table's rows arrives in two phases: as trained, then with a planted shift (age
moved by 3 SD, and the label relationship changed: "yes" exactly when rate_marriage >= 4). Labels
arrive afterwards in a file keyed by the request ids the server returned. `trainwise watch --act`
(in process, as cli.main) checks the log against the champion's training reference: the first
phase fires nothing; the second fires, retrains on the window's labelled rows, gates the new
version against the champion on the same held-out rows, promotes or rejects, and audits each step;
when promoted, the running server swaps to it. Traffic after the swap is judged against the new
version's own training reference, and fires nothing. The test prints the timeline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.serve.conftest import free_port
from trainwise.cli import main
from trainwise.serve.predlog import read_prediction_log
from trainwise.workloads.tabular import load_fair

pytestmark = pytest.mark.slow

ROWS_PER_PHASE = 600
PER_REQUEST = 5
CHAMPION = [
    "model.n_layers=1",
    "model.d_model=16",
    "train.steps=60",
    "train.micro_batch_size=64",
    "train.global_batch_size=64",
    "train.lr=1e-2",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "log.progress=false",
    "log.mlflow=false",
    "train.threads=1",
]
POLICY = ["--set", "monitor.trigger_columns=*", "--set", "monitor.trigger_realised_drop=0.1"]


def trainwise_cmd() -> list[str]:
    script = Path(sys.executable).parent / "trainwise"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "trainwise.cli"]


def start_server(root: Path, log_dir: Path, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = trainwise_cmd() + [
        "serve",
        "fair@champion",
        "--port",
        str(port),
        "--set",
        f"serve.log_dir={log_dir}",
        "--set",
        "serve.log_flush_s=0.2",
        "--set",
        "serve.poll_alias_s=0.5",
        "--set",
        "serve.threads=1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"trainwise serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("trainwise serve did not become ready in 120 s")


def send(client: httpx.Client, url: str, rows: pd.DataFrame, phase: str) -> list[dict]:
    """POST the rows PER_REQUEST at a time with our own request ids; returns (request_id, instance, true label)."""
    keys = []
    records = rows.drop(columns=["had_affair"]).to_dict("records")
    for start in range(0, len(records), PER_REQUEST):
        rid = f"{phase}-{start // PER_REQUEST}"
        r = client.post(
            f"{url}/v1/predict", json={"instances": records[start : start + PER_REQUEST]}, headers={"X-Request-ID": rid}
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == rid, r.text
        keys += [
            {"request_id": rid, "instance": i, "label": rows["had_affair"].iloc[start + i]}
            for i in range(len(records[start : start + PER_REQUEST]))
        ]
    return keys


def wait_for_rows(log_dir: Path, n: int) -> pd.DataFrame:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if list(log_dir.glob("part-*.parquet")):
            log = read_prediction_log(str(log_dir))
            if len(log) >= n:
                return log
        time.sleep(0.1)
    raise AssertionError(f"the prediction log did not reach {n} rows")


def watch(root: Path, capsys, *extra: str) -> str:
    argv = [
        "watch",
        "--log",
        str(root / "log"),
        "--window",
        f"{ROWS_PER_PHASE}rows",
        "--out",
        str(root / "watch"),
        "--model",
        "fair",
        "--labels",
        str(root / "labels.csv"),
        "--iterations",
        "1",
        "--interval-s",
        "0",
        "--retrain-set",
        "train.steps=150",
        "--retrain-set",
        "train.threads=1",
        *POLICY,
        *extra,
    ]
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_serve_log_monitor_retrain_and_hot_swap(tmp_path, capsys, monkeypatch, empty_store_db):
    root = tmp_path
    shutil.copy(empty_store_db, root / "mlflow.db")  # a temporary store, its schema made once per session
    uri = f"sqlite:///{root}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    assert (
        main(
            [
                "train",
                "configs/tabular.toml",
                "--run-dir",
                str(root / "champion"),
                *sum([["--set", s] for s in CHAMPION], []),
            ]
        )
        == 0
    )
    assert main(["register", str(root / "champion"), "--name", "fair"]) == 0
    assert main(["promote", "fair", "1", "--reason", "first model"]) == 0
    capsys.readouterr()

    fair = load_fair().sample(frac=1.0, random_state=0).reset_index(drop=True)  # the table is sorted by target
    before = fair.iloc[:ROWS_PER_PHASE]
    after = fair.iloc[ROWS_PER_PHASE : 2 * ROWS_PER_PHASE].copy()
    after["age"] = after["age"] + 3 * fair["age"].std()
    after["had_affair"] = np.where(
        after["rate_marriage"] >= 4, "yes", "no"
    )  # the relationship the champion learned is gone

    log_dir = root / "log"
    server, url = start_server(root, log_dir, env)
    timeline: dict[str, float] = {}
    try:
        with httpx.Client(timeout=30) as client:
            timeline["traffic started"] = time.time()
            labels = send(client, url, before, "a")
            wait_for_rows(log_dir, ROWS_PER_PHASE)
            pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)
            first = watch(root, capsys)
            assert "reference: training reference of fair/1" in first and "retraining: no trigger fired" in first, first
            timeline["first check: no trigger"] = time.time()

            timeline["shift sent"] = time.time()
            labels += send(client, url, after, "b")
            log = wait_for_rows(log_dir, 2 * ROWS_PER_PHASE)
            # labels arrive afterwards: the file now covers both phases, plus two ids the log never saw
            labels += [
                {"request_id": "ghost", "instance": 0, "label": "no"},
                {"request_id": "ghost", "instance": 1, "label": "yes"},
            ]
            pd.DataFrame(labels).to_csv(root / "labels.csv", index=False)
            timeline["labels arrived"] = time.time()
            watch(root, capsys)
            drift = json.loads((root / "watch" / "drift.json").read_text())
            record = drift["retraining"]
            timeline["trigger fired"] = record["started_unix_s"]

            assert main(["history", "fair", "--json"]) == 0
            entries = json.loads(capsys.readouterr().out)["entries"]
            promoted = record["decision"] == "promoted"
            if promoted:
                timeline["version promoted"] = (
                    next(e["when_us"] for e in entries if e["action"] == "promote" and e["to_version"] == "2") / 1e6
                )
                deadline = time.monotonic() + 60
                while client.get(f"{url}/v1/model").json()["model_version"] != "fair/2":
                    assert time.monotonic() < deadline, "the server did not swap to fair/2 within 60 s"
                    time.sleep(0.1)
                timeline["swap seen"] = time.time()
                # the shift goes on; the new champion serves it and is judged against its own training reference
                later = fair.iloc[2 * ROWS_PER_PHASE : 3 * ROWS_PER_PHASE].copy()
                later["age"] = later["age"] + 3 * fair["age"].std()
                later["had_affair"] = np.where(later["rate_marriage"] >= 4, "yes", "no")
                send(client, url, later, "c")
                wait_for_rows(log_dir, 3 * ROWS_PER_PHASE)
                third = watch(root, capsys)
                after_swap = json.loads((root / "watch" / "drift.json").read_text())
    finally:
        server.terminate()
        server.wait(timeout=30)

    start = timeline["traffic started"]
    print("\nserve -> monitor -> retrain timeline (seconds after the first request):")
    for event, t in timeline.items():
        print(f"  {t - start:7.2f} s  {event}")
    print(
        f"  decision: {record['decision']} (gate {'passed' if record['gate_passed'] else 'failed'}: "
        f"{record['gate_reasons']})"
    )
    if os.environ.get("TRAINWISE_E2E_TIMELINE_JSON"):  # benchmarks/serve_monitor_e2e.py commits it
        Path(os.environ["TRAINWISE_E2E_TIMELINE_JSON"]).write_text(
            json.dumps(
                {
                    "seconds_after_first_request": {e: round(t - start, 2) for e, t in timeline.items()},
                    "decision": record["decision"],
                    "gate_verdict": record.get("gate_verdict"),
                    "triggers": [t["name"] for t in drift["triggers"]],
                },
                indent=2,
            )
        )

    # the log the real server wrote was read with no renaming; metadata was never tested; predictions were
    assert {
        "timestamp",
        "request_id",
        "instance",
        "model_version",
        "latency_ms",
        "in_age",
        "prediction",
        "prob_yes",
        "label",
    } <= set(log.columns)
    tested = {c["name"] for c in drift["columns"]}
    assert "in_age" in tested and not tested & {"timestamp", "request_id", "instance", "model_version", "latency_ms"}
    assert drift["prediction_drift"] is not None and {c["name"] for c in drift["prediction_columns"]} == {
        "prediction",
        "prob_no",
        "prob_yes",
    }
    assert "in_age" in drift["windows"][-1]["drifted_columns"] and drift["reference"]["source"].startswith(
        "training reference of fair/1"
    )
    assert (
        drift["labels"]["n_unknown"] == 2
        and drift["labels"]["n_joined"] == ROWS_PER_PHASE
        and drift["labels"]["n_outside"] == ROWS_PER_PHASE
    )
    assert {t["name"] for t in drift["triggers"]} == {"dataset_drift", "realised_drop"}
    assert drift["performance"]["realised"]["accuracy_drop"]["value"] > 0.1

    # every step is in the audit trail, whichever way the gate went
    actions = [e["action"] for e in entries]
    assert actions[0] == "promote" and "retrain_started" in actions and f"retrain_{record['decision']}" in actions
    assert record["version"] == "2" and record["decision"] in ("promoted", "rejected")
    assert promoted == ("promote" in actions[actions.index("retrain_started") :])
    assert promoted, f"the retrained model should beat the champion on the shifted window: {record['gate_reasons']}"
    assert "swap seen" in timeline
    assert after_swap["windows"][-1]["model_version"] == "fair/2", third
    assert (
        after_swap["reference"]["source"].startswith("training reference of fair/2")
        and after_swap["retraining"]["decision"] == "none"
    ), third
