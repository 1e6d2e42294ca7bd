"""Resumable checkpoints without pickle: tensors in safetensors, everything else in JSON.

checkpoints/step_000100/{model.safetensors, optim.safetensors, rng.safetensors, state.json}
checkpoints/latest  (a one-line file naming the newest complete checkpoint)

Runs with a process group (DDP, FSDP2) write sharded checkpoints instead (checkpoint_dcp.py); both
formats load through `load_checkpoint`, which tells them apart by their files.

A checkpoint directory is written under a temporary name and renamed into place, then `latest`
is replaced atomically, so a crash at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from trainwise.errors import DataError
from trainwise.train.checkpoint_dcp import is_sharded, load_sharded, save_sharded
from trainwise.rundir import read_json, save_tensors_atomic, write_atomic, write_json


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able rest."""
    tensors, plain = {}, {"state": {}, "param_groups": opt_state["param_groups"]}
    for pid, st in opt_state["state"].items():
        plain["state"][str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                plain["state"][str(pid)][k] = v
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict = {int(pid): dict(v) for pid, v in plain["state"].items()}
    for key, t in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = t
    return {"state": state, "param_groups": plain["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    np_state = np.random.get_state()
    plain = {"python": _jsonable(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, plain


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))])
    v, state, gauss = plain["python"]
    random.setstate((v, tuple(state), gauss))
    np.random.set_state((plain["numpy"][0], np.asarray(plain["numpy"][1], dtype=np.uint32), *plain["numpy"][2:]))


def save_checkpoint(ckpt_root: str | Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scaler, scheduler_state: dict, extra: dict) -> Path:
    """Write checkpoint `step` atomically and point `latest` at it; keeps the newest two."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():  # every rank writes its shards
        return save_sharded(ckpt_root, step, model, optimizer, scaler, {**extra, "scheduler": scheduler_state}, _rng_state())
    ckpt_root = Path(ckpt_root)
    final = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".tmp_step_{step:07d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # weights keep their training dtype (bf16-true stays bf16) so that resume is exact
    save_tensors_atomic(_plain_state(model), tmp / "model.safetensors")
    opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
    save_tensors_atomic(opt_tensors, tmp / "optim.safetensors")
    rng_tensors, rng_plain = _rng_state()
    save_tensors_atomic(rng_tensors, tmp / "rng.safetensors")
    state = {
        "step": step,
        "optimizer": opt_plain,
        "rng": rng_plain,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "scheduler": scheduler_state,
        **extra,
    }
    write_json(tmp / "state.json", state)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_atomic(ckpt_root / "latest", final.name + "\n")
    for old in sorted(p for p in ckpt_root.glob("step_*") if p.name != final.name)[:-1]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with torch.compile's `_orig_mod.` prefix removed, so compiled and plain runs share checkpoints."""
    return {k.replace("_orig_mod.", ""): v for k, v in model.state_dict().items()}


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    pointer = Path(ckpt_root) / "latest"
    if not pointer.is_file():
        return None
    path = Path(ckpt_root) / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler) -> dict:
    """Restore model, optimizer, scaler and RNG state in place; returns state.json."""
    path = Path(path)
    if is_sharded(path):
        state, rng_tensors = load_sharded(path, model, optimizer, scaler)
        _set_rng_state(rng_tensors, state["rng"])
        return state
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise DataError(f"checkpoint {path} is in the one-process format (safetensors); resume it with one process and parallel.strategy = 'single' (sharded checkpoints from DDP/FSDP2 runs load at any world size)")
    state = read_json(path / "state.json")
    weights = load_file(path / "model.safetensors")
    live = model.state_dict()
    prefix = {k.replace("_orig_mod.", ""): k for k in live}  # plain name -> the model's own name
    own = {plain: live[name] for plain, name in prefix.items()}
    if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
        raise DataError(f"checkpoint {path} was written by a different model (its tensors do not match this config's architecture)")
    model.load_state_dict({prefix[k]: v for k, v in weights.items()})
    optimizer.load_state_dict(_unflatten_optimizer(load_file(path / "optim.safetensors"), state["optimizer"]))
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(load_file(path / "rng.safetensors"), state["rng"])
    return state
