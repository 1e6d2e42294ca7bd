"""What `trainwise train` and `trainwise launch` do around the loop: resolve the config (from a
recipe, or from a run directory being resumed), check that MLflow is there when asked for, train,
and log the finished run to MLflow.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from trainwise.config import Config, load_config, parse_override
from trainwise.errors import ConfigError
from trainwise.registry.tracking import log_run_if_enabled  # imports mlflow only when it logs
from trainwise.train.loop import train

# Fields that may change when a run is resumed: they do not alter the optimisation trajectory.
RESUMABLE_OVERRIDES = {
    "parallel.strategy",
    "parallel.backend",
    "train.micro_batch_size",
    "train.steps",
    "train.halt_after_steps",
    "train.checkpoint_every",
    "train.log_every",
    "train.threads",
    "log.progress",
    "log.mlflow",
}


def resume_config(run_dir: Path, overrides: list[str]) -> Config:
    """The config of the run in `run_dir`, with `overrides` that may change on resume."""
    cfg_path = run_dir / "config.toml"
    if not cfg_path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.toml there; is it a trainwise run directory?")
    for item in overrides:
        section, name, _ = parse_override(item)
        if f"{section}.{name}" not in RESUMABLE_OVERRIDES:
            raise ConfigError(
                f"--resume: {section}.{name} cannot change when resuming (it would change the run's trajectory); "
                f"only {', '.join(sorted(RESUMABLE_OVERRIDES))} can"
            )
    return load_config(cfg_path, overrides)


def run_config(config: str | None, overrides: list[str], run_dir: str | None, resume: str | None) -> Config:
    """The config a `train`/`launch` command line asks for: CONFIG (+ --run-dir), or --resume RUN_DIR."""
    if resume:
        if config or run_dir:
            raise ConfigError(
                "--resume RUN_DIR takes the config from RUN_DIR/config.toml: give no CONFIG or --run-dir with it"
            )
        return resume_config(Path(resume), overrides)
    if not config:
        raise ConfigError("give a CONFIG (e.g. configs/lm-tiny.toml) or --resume RUN_DIR")
    return load_config(config, overrides)


def check_tracking(cfg: Config) -> None:
    """log.mlflow needs MLflow: say so before training, not after it (a GPU image may lack it)."""
    try:
        missing = importlib.util.find_spec("mlflow") is None
    except ImportError:
        missing = True
    if cfg.log.mlflow and missing:
        raise ConfigError(
            "log.mlflow = true, but MLflow is not installed here: pip install mlflow, or --set log.mlflow=false "
            "(the run directory holds everything MLflow would get)"
        )


def run_training(config: str | None, overrides: list[str], run_dir: str | None = None, resume: str | None = None):
    """Train what the command line asks for; returns (RunResult, MLflow run id or None).

    Under torchrun only rank 0 logs to MLflow (the run id is None on the other ranks).
    """
    cfg = run_config(config, overrides, run_dir, resume)
    check_tracking(cfg)
    result = train(cfg, Path(resume), resume=True) if resume else train(cfg, run_dir)
    mlflow_run_id = None
    if os.environ.get("RANK", "0") == "0" and cfg.log.mlflow:
        mlflow_run_id = log_run_if_enabled(result.run_dir, cfg)
    return result, mlflow_run_id
