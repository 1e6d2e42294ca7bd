"""Log a finished run directory to MLflow: params, per-step metrics, summary and artifacts.

The trainer and `trainwise bench` call `log_run_to_mlflow(run_dir)` after a run ends (when
`log.mlflow` is on); `trainwise register` calls it too when the run was never logged. The run
directory stays the source of truth; MLflow is the searchable, browsable copy. The MLflow run id is
written back to `run_dir/mlflow.json` so that a later `register` reuses the same MLflow run.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from trainwise.errors import DataError
from trainwise.registry.store import get_client, get_or_create_experiment, resolve_tracking_uri
from trainwise.rundir import read_json, write_json

# Logged as artifacts; checkpoints/ is left out (resumable state, large, not needed to audit).
RUN_FILES = ("config.toml", "env.json", "summary.json", "metrics.jsonl")
RUN_DIRS = ("model", "eval")
MLFLOW_JSON = "mlflow.json"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> {"a.b": leaf}.

    >>> flatten({"train": {"steps": 10}, "x": 1})
    {'train.steps': 10, 'x': 1}
    """
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_metrics_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i} is not valid JSON: {e}") from None
    return lines


def _step_metrics(lines: list[dict]):
    # lazy: mlflow, as in log_run_to_mlflow
    from mlflow.entities import Metric

    for i, rec in enumerate(lines):
        step = int(rec.get("step", i))
        ts_ms = int(rec.get("time_s", 0) * 1000) if is_number(rec.get("time_s")) else 0
        for k, v in rec.items():
            if k != "step" and is_number(v):
                yield Metric(k, float(v), ts_ms, step)


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_run_to_mlflow(run_dir: str | Path, tracking_uri: str | None = None, experiment: str = "trainwise") -> str:
    """Log `run_dir` to MLflow and return the MLflow run id.

    Params: every field of config.toml as `section.field`. Metrics: each numeric key of every
    metrics.jsonl line at its step, and numeric summary.json fields. Tags: the run directory, its
    status, precision, AC and strategy. Artifacts: config.toml, env.json, summary.json,
    metrics.jsonl, model/ and eval/.
    """
    # lazy: mlflow takes seconds to import; every CLI verb loads this module
    from mlflow.entities import Metric, Param

    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.toml").is_file():
        raise DataError(
            f"{run_dir} is not a run directory (no config.toml); expected the output folder of `trainwise train`"
        )
    try:
        cfg = tomllib.loads((run_dir / "config.toml").read_text())
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{run_dir / 'config.toml'} is not valid TOML: {e}") from None
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    uri = resolve_tracking_uri(tracking_uri)
    client = get_client(uri)
    exp_id = get_or_create_experiment(client, experiment)
    tags = {"trainwise.run_dir": str(run_dir), "trainwise.run_id": run_dir.name}
    tags.update(
        {
            f"trainwise.{k}": str(summary[k])
            for k in ("status", "precision", "ac", "strategy", "world_size")
            if k in summary
        }
    )
    run = client.create_run(exp_id, tags=tags, run_name=run_dir.name)
    run_id = run.info.run_id
    params = [Param(k, json.dumps(v) if isinstance(v, list) else str(v)) for k, v in flatten(cfg).items()]
    for chunk in _batched(params, 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=chunk)
    metrics = list(_step_metrics(read_metrics_lines(run_dir / "metrics.jsonl")))
    metrics += [Metric(f"summary.{k}", float(v), 0, 0) for k, v in flatten(summary).items() if is_number(v)]
    for chunk in _batched(metrics, 1000):  # and at most 1000 metrics
        client.log_batch(run_id, metrics=chunk)
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    for name in RUN_DIRS:
        if (run_dir / name).is_dir():
            client.log_artifacts(run_id, str(run_dir / name), name)
    failed = str(summary.get("status", "")).lower() in ("failed", "error", "diverged", "nonfinite")
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    write_json(run_dir / MLFLOW_JSON, {"tracking_uri": uri, "run_id": run_id, "experiment_id": exp_id})
    return run_id


def logged_run_id(run_dir: Path, client) -> str | None:
    """The MLflow run this run directory was logged to on `client`'s store, if it still exists."""
    path = Path(run_dir) / MLFLOW_JSON
    if not path.is_file():
        return None
    rec = read_json(path)
    if rec.get("tracking_uri") != client.tracking_uri:
        return None
    # lazy: mlflow, as in log_run_to_mlflow
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(rec["run_id"]).info.run_id
    except (MlflowException, KeyError):
        return None


def log_run_if_enabled(run_dir: str | Path, cfg) -> str | None:
    """What the trainer and bench call after a run: log it when `log.mlflow` is on, to the store
    named by registry.tracking_uri (else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."""
    if not cfg.log.mlflow:
        return None
    return log_run_to_mlflow(run_dir, cfg.registry.tracking_uri or None, cfg.registry.experiment)
