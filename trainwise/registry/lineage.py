"""What a registered version remembers about where it came from (its lineage tags).

Every value is read from the run directory's files (config.toml, env.json, summary.json,
model/model.json, eval/), so lineage is exactly what the run recorded, nothing re-derived.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from trainwise.config import config_hash, load_config
from trainwise.errors import ConfigError, DataError
from trainwise.registry.tracking import flatten, is_number
from trainwise.rundir import MODEL_JSON, MODEL_WEIGHTS, file_sha256, read_json
from trainwise.seal import read_model_dir

TAG = "trainwise."  # prefix of every tag trainwise writes, so they group together in the MLflow UI
EVAL_FILES = ("predictions.parquet", "metrics.json", "report.html")
MAX_METRIC_TAGS = 40  # a registry tag per metric; the full metrics.json is an artifact anyway


def check_model_dir(model_dir: Path) -> dict:
    """model.json of `model_dir` (a run's model/) after checking every file against model/manifest.json."""
    run_dir = model_dir.parent
    if not (model_dir / MODEL_JSON).is_file() or not (model_dir / MODEL_WEIGHTS).is_file():
        raise DataError(
            f"{run_dir} holds no model (expected {model_dir / MODEL_WEIGHTS} and {model_dir / MODEL_JSON}); "
            "register the directory of a finished `trainwise train` run"
        )
    _, meta = read_model_dir(model_dir, verify=True)
    if "weights_sha256" not in meta:
        raise DataError(
            f"{model_dir / MODEL_JSON} lacks 'weights_sha256'; it was not written by trainwise.rundir.save_model"
        )
    return meta


def dir_sha256(folder: Path, names: tuple[str, ...]) -> str:
    """One sha256 over the named files of `folder` (name and content), in the given order."""
    h = hashlib.sha256()
    for name in names:
        if (folder / name).is_file():
            h.update(name.encode() + b"\0" + file_sha256(folder / name).encode())
    return h.hexdigest()


def _config_hash(run_dir: Path) -> str:
    try:
        return config_hash(load_config(run_dir / "config.toml"))
    except ConfigError:  # a config from another trainwise version: hash the file's bytes instead
        return file_sha256(run_dir / "config.toml")[:16]


def collect_lineage(run_dir: Path, model_meta: dict) -> dict[str, str]:
    """The lineage tags of the version registered from `run_dir` (all values strings)."""
    env = read_json(run_dir / "env.json") if (run_dir / "env.json").is_file() else {}
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    tags = {
        "run_dir": str(run_dir),
        "run_id": run_dir.name,
        "weights_sha256": model_meta["weights_sha256"],
        "workload": str(model_meta.get("workload", "")),
        "task": str(model_meta.get("task", "")),
        "config_hash": _config_hash(run_dir) if (run_dir / "config.toml").is_file() else "",
        "git_sha": str(env.get("git_sha", "")),
        "seed": str(env.get("seed", "")),
        "precision": str(summary.get("precision", env.get("precision", ""))),
        "ac": str(summary.get("ac", "")),
        "strategy": str(summary.get("strategy", "")),
        "world_size": str(summary.get("world_size", "")),
    }
    for split, digest in (env.get("data_fingerprints") or {}).items():
        tags[f"data_fingerprint.{split}"] = str(digest)
    eval_dir = run_dir / "eval"
    if (eval_dir / "metrics.json").is_file():
        metrics = {k: v for k, v in flatten(read_json(eval_dir / "metrics.json")).items() if is_number(v)}
        for k in list(metrics)[:MAX_METRIC_TAGS]:
            tags[f"metric.{k}"] = repr(float(metrics[k]))
        tags["eval_sha256"] = dir_sha256(eval_dir, EVAL_FILES)
    if (eval_dir / "report.html").is_file():
        tags["eval_report_sha256"] = file_sha256(eval_dir / "report.html")
    return {TAG + k: v for k, v in tags.items()}


def canonical_sha256(obj) -> str:
    """sha256 of an object's canonical JSON (sorted keys, no spaces): hashes of audit evidence.

    >>> canonical_sha256({"b": 1, "a": [1, 2]}) == canonical_sha256({"a": [1, 2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
