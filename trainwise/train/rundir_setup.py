"""Creating and writing one run directory (layout: DESIGN.md, 'The run directory')."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from trainwise.config import Config, config_hash, config_to_toml
from trainwise.env import device_facts, git_sha, library_versions
from trainwise.monitor.reference import write_reference
from trainwise.errors import ConfigError, TrainwiseError
from trainwise.rundir import check_fits_spec, clean_state_dict, load_weights_into, plain_shapes, save_model, write_atomic, write_json
from trainwise.train.checkpoint import latest_checkpoint, save_checkpoint
from trainwise.train.precision import fp8_gemm_kind
from trainwise.workloads.base import Workload, fingerprint_split, get_workload_fn


def build_workload(cfg: Config) -> Workload:
    """The configured workload; errors from a user's entry point are reported, not raised raw."""
    fn = get_workload_fn(cfg.workload.name)
    try:
        workload = fn(cfg)
    except TrainwiseError:
        raise
    except Exception as e:  # the user's workload function failed: say where, without a traceback
        raise ConfigError(f"workload {cfg.workload.name!r} failed to build: {type(e).__name__}: {e}") from None
    if cfg.model.init_from:
        load_weights_into(workload.model, cfg.model.init_from)
    return workload


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.workload.name}-{cfg.precision.policy}-{config_hash(cfg)[:6]}"


class RunFiles:
    """Writes into runs/<id>/: config.toml, env.json, metrics.jsonl, summary.json, checkpoints/, model/."""

    def __init__(self, path: Path, is_main: bool):
        self.path = path
        self.is_main = is_main
        self.checkpoints = path / "checkpoints"
        self.metrics = path / "metrics.jsonl"

    def log_metrics(self, row: dict) -> None:
        # one short append per logged step; a crash loses at most the line being written
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")

    def checkpoint(self, step: int, model, optimizer, scaler, history: dict) -> None:
        save_checkpoint(self.checkpoints, step, model, optimizer, scaler, {}, {"history": history})

    def save_model(self, model, workload: Workload) -> None:
        if self.is_main:
            save_model(model, self.path / "model", {"workload": workload.name, "task": workload.task, "spec": workload.spec,
                                                    "input": workload.input, "info": workload.info})
            write_reference(self.path, workload)  # the monitor's default reference (trainwise.monitor.reference)
        elif torch.distributed.is_initialized():
            clean_state_dict(model)  # FSDP2: every rank takes part in the all-gathers of full_tensor()

    def write_summary(self, summary: dict) -> None:
        if self.is_main:
            write_json(self.path / "summary.json", summary)

    def fail(self, reason: str) -> None:
        self.write_summary({"status": "failed", "error": reason})


def _truncate_metrics(path: Path, after_step: int) -> None:
    """On resume, drop log lines written after the checkpoint, so the log equals an uninterrupted run's."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= after_step]
    write_atomic(path, "".join(line + "\n" for line in keep))


def open_run_dir(cfg: Config, run_dir, resume: bool, workload: Workload, policy, prepared, dist, device) -> RunFiles:
    """Create the run directory (or reopen it for --resume) and write config.toml and env.json."""
    # Before the first step, not after the last: weights that model.json's spec could not load back
    # (a wrapper's prefix in their names, a Workload.spec that builds another model) are refused now.
    check_fits_spec(plain_shapes(prepared.model), workload.spec, f"workload {workload.name!r}")
    path = Path(run_dir) if run_dir else default_run_dir(cfg)
    run = RunFiles(path, dist.is_main)
    if resume:
        ckpt = latest_checkpoint(run.checkpoints)
        _truncate_metrics(run.metrics, int(ckpt.name.split("_")[1]) if ckpt else 0) if dist.is_main else None
        return run
    if dist.is_main and path.exists() and any(path.iterdir()):  # other ranks may already see rank 0's directory
        raise ConfigError(f"run directory {path} already exists and is not empty; pass --resume {path} to continue it, or choose another --run-dir")
    if not dist.is_main:
        return run
    tmp = path.with_name(f".{path.name}.creating")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_atomic(tmp / "config.toml", config_to_toml(cfg))
    env = {
        **device_facts(device),
        "libraries": library_versions(),
        "git_sha": git_sha(),
        "seed": cfg.train.seed,
        "config_hash": config_hash(cfg),
        "precision": policy.describe(),
        "fp8_layers": prepared.fp8_layers,
        "fp8_gemm": fp8_gemm_kind(device) if prepared.fp8_layers else None,
        "fp8_kept_high_precision": (getattr(prepared, "fp8_auto", None) or {}).get("kept_high_precision", cfg.precision.keep_high_precision),
        "fp8_auto": getattr(prepared, "fp8_auto", None),  # with keep_high_precision = ['auto']: the split and why
        "world_size": dist.world_size,
        "strategy": cfg.parallel.strategy,
        "parallel": dist.describe(),  # backend, gather/reduce dtypes, what is sharded
        "data_fingerprints": {s: fingerprint_split(getattr(workload, s)) for s in ("train", "val", "test")},
        "n_params": sum(p.numel() for p in workload.model.parameters()),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(tmp / "env.json", env)
    (tmp / "checkpoints").mkdir()
    if path.exists():
        path.rmdir()  # the empty directory the user named
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(path)
    return run
