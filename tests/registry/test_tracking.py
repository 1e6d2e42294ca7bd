"""log_run_to_mlflow, lineage tags of a registered version, and where the tracking store is."""

from __future__ import annotations

import json

import pytest

from trainwise.config import config_hash, load_config
from trainwise.rundir import file_sha256, read_json


@pytest.fixture(scope="module")
def run(runs):
    return runs("good")


def test_log_run_params_metrics_artifacts(store, run):
    from mlflow import MlflowClient

    from trainwise.registry import log_run_to_mlflow

    run_id = log_run_to_mlflow(run)
    c = MlflowClient(store)
    r = c.get_run(run_id)
    cfg = load_config(run / "config.toml")
    assert r.data.params["train.steps"] == str(cfg.train.steps) and r.data.params["model.d_model"] == "16"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged_loss = sorted((m.step, m.value) for m in c.get_metric_history(run_id, "loss"))
    assert logged_loss == [(row["step"], row["loss"]) for row in rows if "loss" in row] and len(logged_loss) > 1
    assert r.data.metrics["summary.median_step_ms"] == read_json(run / "summary.json")["median_step_ms"]
    assert r.data.tags["trainwise.precision"] == "fp32" and r.info.status == "FINISHED"
    assert {a.path for a in c.list_artifacts(run_id)} >= {
        "config.toml",
        "env.json",
        "summary.json",
        "metrics.jsonl",
        "model",
        "eval",
    }
    assert json.loads((run / "mlflow.json").read_text())["run_id"] == run_id


def test_register_lineage_and_artifacts(store, run):
    from mlflow import MlflowClient

    from trainwise.registry import register_run

    logged = json.loads((run / "mlflow.json").read_text())["run_id"] if (run / "mlflow.json").exists() else None
    mv = register_run(run, "lineage")
    t = mv.tags
    env = json.loads((run / "env.json").read_text())
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert logged is None or mv.run_id == logged  # reuses the MLflow run of the run directory
    assert t["trainwise.config_hash"] == config_hash(load_config(run / "config.toml"))
    assert t["trainwise.data_fingerprint.test"] == env["data_fingerprints"]["test"]
    assert (
        t["trainwise.git_sha"] == env["git_sha"] and t["trainwise.precision"] == "fp32" and t["trainwise.ac"] == "none"
    )
    assert t["trainwise.strategy"] == "single" and t["trainwise.world_size"] == "1"
    assert t["trainwise.eval_report_sha256"] == file_sha256(run / "eval" / "report.html")
    assert float(t["trainwise.metric.accuracy"]) == metrics["accuracy"]
    assert t["trainwise.weights_sha256"] == file_sha256(run / "model" / "weights.safetensors")
    c = MlflowClient(store)
    source_path = mv.source.split("/artifacts/", 1)[1]
    logged_files = ["manifest.json", "model.json", "reference.parquet", "reference_profile.json", "weights.safetensors"]
    assert sorted(a.path.rsplit("/", 1)[1] for a in c.list_artifacts(mv.run_id, source_path)) == logged_files
    assert json.loads(t["trainwise.model_files"]) == {
        name: file_sha256(run / "model" / name) for name in logged_files if name != "manifest.json"
    }


def test_resolve_model_ref_of_run_dir(run):
    from trainwise.registry import resolve_model_ref

    model_dir, meta = resolve_model_ref(run)
    assert model_dir == run.resolve() / "model" and meta["workload"] == "tabular"
    assert resolve_model_ref(run / "model")[0] == model_dir


def test_tracking_uri_precedence(monkeypatch):
    from trainwise.registry.store import DEFAULT_TRACKING_URI, config_tracking_uri, resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert config_tracking_uri(load_config(None)) == "http://env:5000"
    assert config_tracking_uri(load_config(None, ["registry.tracking_uri=http://cfg:5000"])) == "http://cfg:5000"


def test_log_run_if_enabled(store, run, tmp_path, empty_store_db):
    import shutil

    from trainwise.registry.tracking import log_run_if_enabled

    shutil.copy(empty_store_db, tmp_path / "other.db")
    assert log_run_if_enabled(run, load_config(None, ["log.mlflow=false"])) is None
    assert load_config(None).log.mlflow  # every run is tracked unless switched off
    other = f"sqlite:///{tmp_path}/other.db"
    run_id = log_run_if_enabled(
        run, load_config(None, ["log.mlflow=true", f"registry.tracking_uri={other}", "registry.experiment=exp2"])
    )
    from mlflow import MlflowClient

    r = MlflowClient(other).get_run(run_id)
    assert MlflowClient(other).get_experiment(r.info.experiment_id).name == "exp2"
