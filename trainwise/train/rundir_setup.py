"""Creating and writing one run directory (layout: DESIGN.md, 'The run directory')."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from trainwise.config import Config, config_hash, config_to_toml
from trainwise.env import device_facts, git_sha, library_versions
from trainwise.errors import ConfigError, DataError, TrainwiseError
from trainwise.monitor.reference import write_reference
from trainwise.rundir import (
    NonFiniteWeightsError,
    WriteError,
    check_fits_spec,
    clean_state_dict,
    plain_shapes,
    save_model,
    write_atomic,
    write_failure_reason,
    write_json,
)
from trainwise.train.checkpoint import checkpoint_dirs, find_resumable, remove_stale_temporaries, save_checkpoint
from trainwise.train.parallel import broadcast_from_main
from trainwise.train.precision import fp8_gemm_kind
from trainwise.workloads.base import Workload, fingerprint_split


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.workload.name}-{cfg.precision.policy}-{config_hash(cfg)[:6]}"


class RunFiles:
    """Writes into runs/<id>/: config.toml, env.json, metrics.jsonl, summary.json, checkpoints/, model/.

    A write that fails for the file system's sake (a full disk, a read-only folder) raises one
    WriteError that names what was being written and the last good checkpoint to resume from.
    """

    def __init__(self, path: Path, is_main: bool):
        self.path = path
        self.is_main = is_main
        self.checkpoints = path / "checkpoints"
        self.metrics = path / "metrics.jsonl"
        self.resume_from: Path | None = None  # the checkpoint a resumed run continues from (open_run_dir)
        # fault injection for the kill/resume tests (trainwise.train.run.kill_step_for_tests): this
        # process SIGKILLs itself right after writing this checkpoint step; None outside tests
        self.kill_after_checkpoint: int | None = None

    def log_metrics(self, row: dict) -> None:
        # one short append per logged step; a crash loses at most the line being written, and a
        # torn last line is dropped on resume (_truncate_metrics)
        try:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise self.write_error(e, self.metrics) from None

    def checkpoint(self, step: int, model, optimizer, scaler, history: dict) -> None:
        try:
            save_checkpoint(self.checkpoints, step, model, optimizer, scaler, {}, {"history": history})
        except WriteError as e:
            raise self.write_error(e, f"checkpoint step {step} to {self.checkpoints}") from None
        if step == self.kill_after_checkpoint:
            os.kill(os.getpid(), signal.SIGKILL)

    def save_model(self, model, workload: Workload) -> None:
        if self.is_main:
            model_dir = self.path / "model"
            existed = model_dir.exists()
            try:
                save_model(
                    model,
                    model_dir,
                    {
                        "workload": workload.name,
                        "task": workload.task,
                        "spec": workload.spec,
                        "input": workload.input,
                        "info": workload.info,
                    },
                )
                write_reference(self.path, workload)  # the monitor's default reference (trainwise.monitor.reference)
            except NonFiniteWeightsError as e:
                self.fail(str(e))  # summary.json says failed, never completed; nothing of model/ was written
                raise
            except WriteError as e:
                if not existed:  # no half-written model/: the resumed run writes it whole
                    shutil.rmtree(model_dir, ignore_errors=True)
                raise self.write_error(e, f"the model to {model_dir}") from None
        elif torch.distributed.is_initialized():
            clean_state_dict(model)  # FSDP2: every rank takes part in the all-gathers of full_tensor()

    def write_summary(self, summary: dict) -> None:
        if self.is_main:
            try:
                write_json(self.path / "summary.json", summary)
            except WriteError as e:
                raise self.write_error(e, self.path / "summary.json") from None

    def fail(self, reason: str) -> None:
        try:
            self.write_summary({"status": "failed", "error": reason})
        except WriteError:  # the disk that failed the run may refuse this too; the error is raised anyway
            pass

    def write_error(self, e: BaseException, what) -> WriteError:
        """One line: what could not be written, why, and where the run can continue from."""
        reason = write_failure_reason(e) or str(e)
        steps = [int(p.name.removeprefix("step_")) for p in checkpoint_dirs(self.checkpoints)]
        good = f"the last good checkpoint is step {steps[0]}" if steps else "there is no checkpoint yet"
        return WriteError(
            reason,
            getattr(e, "path", self.path),
            f"{reason} writing {what}; {good} (continue with `trainwise train --resume {self.path}` once that is "
            "fixed)",
        )


def _truncate_metrics(path: Path, after_step: int) -> None:
    """On resume, drop log lines written after the checkpoint, so the log equals an uninterrupted run's.

    The last line may be torn (the process died during its append): it is dropped, since every row
    after the checkpoint is written again. A damaged line anywhere else is an error.
    """
    if not path.is_file():
        return
    lines = path.read_bytes().decode(errors="replace").split("\n")
    keep = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) or all(not rest.strip() for rest in lines[number:]):
                continue  # the torn tail
            raise DataError(
                f"{path} line {number} is not JSON ({line[:60]!r}); only a torn last line can be dropped on resume"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise DataError(f"{path} line {number} has no integer 'step'; it was not written by trainwise")
        if row["step"] <= after_step:
            keep.append(line)
    write_atomic(path, "".join(line + "\n" for line in keep))


def _check_writable(folder: Path, what: str) -> None:
    """Refuse a folder this process cannot write into, by trying (root ignores permission bits;
    a read-only mount stops root too)."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"{what} {folder}: cannot write there ({write_failure_reason(e) or e}); give a folder this user can write "
            "to"
        ) from None


def _on_main(dist, fn):
    """fn() on rank 0; every rank returns its result or raises its TrainwiseError, so that no rank
    is left waiting in a collective for a rank 0 that refused the run directory."""
    if not dist.enabled:
        return fn()
    outcome = None
    if dist.is_main:
        try:
            outcome = (fn(), None)
        except TrainwiseError as e:
            outcome = (None, e)
    result, error = broadcast_from_main(dist, outcome)
    if error is not None:
        raise error
    return result


def _reopen(run: RunFiles) -> Path | None:
    """Rank 0 on --resume: check the folder can be written, remove what killed writers left, pick
    the newest checkpoint that verifies (warning about newer ones that do not) and cut
    metrics.jsonl back to it. Returns that checkpoint (None: start from step 0)."""
    if not run.path.is_dir():
        raise ConfigError(f"--resume {run.path}: not a directory")
    for folder in (run.path, run.checkpoints):
        if folder.is_dir():
            _check_writable(folder, "--resume")
    remove_stale_temporaries(run.checkpoints)
    for folder in (run.path, run.path / "model"):  # write_atomic's temporary files of a killed process
        for p in folder.glob(".*.tmp") if folder.is_dir() else ():
            p.unlink(missing_ok=True)
    ckpt, skipped = find_resumable(run.checkpoints)
    for why in skipped:
        print(f"trainwise train: warning: skipping checkpoint {why}; resuming from {ckpt.name}", file=sys.stderr)
    _truncate_metrics(run.metrics, int(ckpt.name.removeprefix("step_")) if ckpt else 0)
    return ckpt


def open_run_dir(cfg: Config, run_dir, resume: bool, workload: Workload, policy, prepared, dist, device) -> RunFiles:
    """Create the run directory (or reopen it for --resume: then `run.resume_from` is the
    checkpoint to load) and write config.toml and env.json."""
    # Before the first step, not after the last: weights that model.json's spec could not load back
    # (a wrapper's prefix in their names, a Workload.spec that builds another model) are refused now.
    check_fits_spec(plain_shapes(prepared.model), workload.spec, f"workload {workload.name!r}")
    path = Path(run_dir) if run_dir else default_run_dir(cfg)
    run = RunFiles(path, dist.is_main)
    if resume:
        run.resume_from = _on_main(dist, lambda: _reopen(run))
    else:
        _on_main(dist, lambda: _create(cfg, path, workload, policy, prepared, dist, device))
    return run


def _create(cfg: Config, path: Path, workload: Workload, policy, prepared, dist, device) -> None:
    """Rank 0: write the new run directory whole under a temporary name, then rename it into place."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--run-dir {path} is a file, not a directory; give the path of a new or empty directory")
    if path.exists() and any(path.iterdir()):
        raise ConfigError(
            f"run directory {path} already exists and is not empty; pass --resume {path} to continue it, or choose "
            "another --run-dir"
        )
    if path.exists():  # the empty directory the user named: it may be a read-only mount
        _check_writable(path, "--run-dir")
    tmp = path.with_name(f".{path.name}.creating")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_atomic(tmp / "config.toml", config_to_toml(cfg))
        write_json(tmp / "env.json", _env_facts(cfg, workload, policy, prepared, dist, device))
        (tmp / "checkpoints").mkdir()
        if path.exists():
            path.rmdir()  # the empty directory the user named
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(path)
    except (OSError, WriteError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(
            f"--run-dir {path}: cannot create the run directory ({write_failure_reason(e) or e}); give a path this "
            "user can write to"
        ) from None


def _env_facts(cfg: Config, workload: Workload, policy, prepared, dist, device) -> dict:
    return {
        **device_facts(device),
        "libraries": library_versions(),
        "git_sha": git_sha(),
        "seed": cfg.train.seed,
        "config_hash": config_hash(cfg),
        "precision": policy.describe(),
        "fp8_layers": prepared.fp8_layers,
        "fp8_gemm": fp8_gemm_kind(device) if prepared.fp8_layers else None,
        "fp8_kept_high_precision": (prepared.fp8_auto or {}).get(
            "kept_high_precision", cfg.precision.keep_high_precision
        ),
        "fp8_auto": prepared.fp8_auto,  # with keep_high_precision = ['auto']: the split and why
        "world_size": dist.world_size,
        "strategy": cfg.parallel.strategy,
        "parallel": dist.describe(),  # backend, gather/reduce dtypes, what is sharded
        "data_fingerprints": {s: fingerprint_split(getattr(workload, s)) for s in ("train", "val", "test")},
        "n_params": sum(p.numel() for p in workload.model.parameters()),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
