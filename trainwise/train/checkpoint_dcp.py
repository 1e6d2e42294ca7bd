"""Sharded checkpoints through torch.distributed.checkpoint (DCP), for runs with a process group.

checkpoints/step_000100/{.metadata, __<rank>_0.distcp ..., rng.safetensors, state.json}

Every rank writes its own shards (DDP ranks write disjoint parts of the replicated state, FSDP2
ranks their parameter/optimizer shards); the `.metadata` file records each tensor's global shape,
so the checkpoint loads at any world size, and into a plain one-process model (DCP reshards on
load). `get_state_dict`/`set_state_dict` give wrapper-free names (no `module.`, DTensors for
FSDP2), so DDP, FSDP2 and single-process runs read each other's checkpoints.
Atomicity is kept as in checkpoint.py: all ranks write into a temporary directory; rank 0 renames
it into place after a barrier and only then moves `latest`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as tdist
from torch import nn

from trainwise.errors import DataError
from trainwise.rundir import read_json, save_tensors_atomic, write_atomic, write_json

FORMAT = "dcp"


def _dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def _barrier() -> None:
    if _dist():
        tdist.barrier()


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / ".metadata").is_file()


def save_sharded(ckpt_root: str | Path, step: int, model: nn.Module, optimizer, scaler, extra: dict, rng: tuple[dict, dict]) -> Path:
    """All ranks call this; returns the final checkpoint directory."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    ckpt_root = Path(ckpt_root)
    rank = tdist.get_rank() if _dist() else 0
    final = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".tmp_step_{step:07d}"  # one name for all ranks (no pid)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    if rank == 0:
        rng_tensors, rng_plain = rng  # rank 0's RNG: every rank was seeded alike
        save_tensors_atomic(rng_tensors, tmp / "rng.safetensors")
        world = tdist.get_world_size() if _dist() else 1
        write_json(tmp / "state.json", {"format": FORMAT, "step": step, "saved_world_size": world, "rng": rng_plain,
                                        "scaler": scaler.state_dict() if scaler is not None else None, "scheduler": {}, **extra})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_atomic(ckpt_root / "latest", final.name + "\n")
        for old in sorted(p for p in ckpt_root.glob("step_*") if p.name != final.name)[:-1]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def _check_same_model(path: Path, model_sd: dict) -> None:
    from torch.distributed.checkpoint import FileSystemReader

    saved = {k.removeprefix("model."): tuple(v.size) for k, v in FileSystemReader(str(path)).read_metadata().state_dict_metadata.items()
             if k.startswith("model.") and hasattr(v, "size")}
    own = {k: tuple(v.shape) for k, v in model_sd.items() if isinstance(v, torch.Tensor)}
    if saved != own:
        diff = sorted(set(saved) ^ set(own)) or sorted(k for k in own if saved[k] != own[k])
        raise DataError(f"checkpoint {path} was written by a different model (its tensors do not match this config's architecture; first difference: {diff[0]})")


def load_sharded(path: str | Path, model: nn.Module, optimizer, scaler) -> tuple[dict, dict]:
    """Load a DCP checkpoint into `model`/`optimizer` at this process's world size (resharding as
    needed); returns (state.json, rng tensors) for the caller to restore RNG state."""
    import torch.distributed.checkpoint as dcp
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    state = read_json(path / "state.json")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    _check_same_model(path, model_sd)
    sd = {"model": model_sd, "optim": optim_sd}
    dcp.load(sd, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state, load_file(path / "rng.safetensors")
