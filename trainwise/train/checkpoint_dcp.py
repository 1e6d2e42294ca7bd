"""Sharded checkpoints through torch.distributed.checkpoint (DCP), for runs with a process group.

checkpoints/step_000100/{.metadata, __<rank>_0.distcp ..., rng.safetensors, state.json, manifest.json}

Every rank writes its own shards (DDP ranks write disjoint parts of the replicated state, FSDP2
ranks their parameter/optimizer shards); the `.metadata` file records each tensor's global shape,
so the checkpoint loads at any world size, and into a plain one-process model (DCP reshards on
load). Tensors are named as in the plain model (checkpoint_names.py: no `module.`, no
activation checkpointing level; DTensors for FSDP2), so DDP, FSDP2 and single-process runs under
any AC mode read each other's checkpoints.
Atomicity is kept as in checkpoint.py: all ranks write into a temporary directory; rank 0 renames
it into place once every rank's shards are written and hashed, and only then moves `latest`.
`.metadata` is pickle: `load_checkpoint` verifies manifest.json before DCP reads a byte of it.
A rank whose write fails (a full disk) makes every rank raise the same WriteError, so no rank is
left waiting for it in a collective.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
import torch.distributed as tdist
from safetensors.torch import load_file
from torch import nn

from trainwise.errors import DataError
from trainwise.rundir import WriteError, read_json, save_tensors_atomic, write_atomic, write_failure_reason, write_json
from trainwise.train.checkpoint_manifest import hash_files, prune_checkpoints, write_manifest
from trainwise.train.checkpoint_names import plain_name_of_fqn, rename_optimizer_state

FORMAT = "dcp"


def _dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def is_sharded(path: str | Path) -> bool:
    return (Path(path) / ".metadata").is_file()


def _as_write_error(e: BaseException, where: Path) -> WriteError:
    """A WriteError for a file-system failure (DCP wraps each rank's in a CheckpointException); else re-raise `e`."""
    # torch.distributed.checkpoint takes ~0.7 s to import; only sharded (FSDP2) runs need it
    from torch.distributed.checkpoint.api import CheckpointException

    if isinstance(e, CheckpointException):  # each rank's exception, pickled: without its __context__
        reasons = [write_failure_reason(exc, where) for exc, _ in e.failures.values()]
        if any(reasons):
            return WriteError(next(r for r in reasons if r), where)
    elif write_failure_reason(e, where):
        return WriteError(
            write_failure_reason(e, where), getattr(e, "path", None) or getattr(e, "filename", None) or where
        )
    raise e


def _agree(error: WriteError | None, payload=None, tmp: Path | None = None) -> list:
    """All ranks exchange (error, payload); if any rank failed, rank 0 removes `tmp` and every rank
    raises the first error. Returns every rank's payload."""
    mine = (error, payload)
    if _dist():
        gathered = [None] * tdist.get_world_size()
        tdist.all_gather_object(gathered, mine)
    else:
        gathered = [mine]
    first = next((err for err, _ in gathered if err is not None), None)
    if first is not None:
        if tmp is not None and (not _dist() or tdist.get_rank() == 0):
            shutil.rmtree(tmp, ignore_errors=True)
        raise first
    return [p for _, p in gathered]


def save_sharded(
    ckpt_root: str | Path, step: int, model: nn.Module, optimizer, scaler, extra: dict, rng: tuple[dict, dict]
) -> Path:
    """All ranks call this; returns the final checkpoint directory."""
    # torch.distributed.checkpoint takes ~0.7 s to import; only sharded (FSDP2) runs need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict

    ckpt_root = Path(ckpt_root)
    rank = tdist.get_rank() if _dist() else 0
    final = ckpt_root / f"step_{step:07d}"
    tmp = ckpt_root / f".tmp_step_{step:07d}"  # one name for all ranks (no pid)
    error = None
    if rank == 0:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        except OSError as e:
            error = _as_write_error(e, tmp)
    _agree(error)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    names = plain_name_of_fqn(model)
    state = {"model": {names[k]: v for k, v in model_sd.items()}, "optim": rename_optimizer_state(optim_sd, names)}
    error, hashed = None, {}
    try:
        dcp.save(state, checkpoint_id=str(tmp))
        hashed = hash_files(
            tmp, [p.name for p in tmp.iterdir() if p.name.startswith(f"__{rank}_")]
        )  # each rank its own shards
    except (CheckpointException, OSError) as e:
        error = _as_write_error(e, tmp)
    hashed_by_rank = _agree(error, hashed, tmp)
    error = None
    if rank == 0:
        try:
            _finish(
                tmp, final, ckpt_root, step, scaler, extra, rng, {k: v for h in hashed_by_rank for k, v in h.items()}
            )
        except Exception as e:
            error = _as_write_error(e, tmp)
    _agree(error, tmp=tmp)
    if rank == 0:
        prune_checkpoints(ckpt_root, final)
    return final


def _finish(
    tmp: Path, final: Path, ckpt_root: Path, step: int, scaler, extra: dict, rng: tuple[dict, dict], hashed: dict
) -> None:
    """Rank 0, after every rank's shards are written: RNG, state.json, manifest, rename, `latest`."""
    rng_tensors, rng_plain = rng  # rank 0's RNG: every rank was seeded alike
    save_tensors_atomic(rng_tensors, tmp / "rng.safetensors")
    world = tdist.get_world_size() if _dist() else 1
    write_json(
        tmp / "state.json",
        {
            "format": FORMAT,
            "step": step,
            "saved_world_size": world,
            "rng": rng_plain,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "scheduler": {},
            **extra,
        },
    )
    write_manifest(tmp, step, hashed)  # last: a directory with a manifest is complete
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_atomic(ckpt_root / "latest", final.name + "\n")


def _check_same_model(path: Path, model_sd: dict) -> None:
    # torch.distributed.checkpoint takes ~0.7 s to import; only sharded (FSDP2) runs need it
    from torch.distributed.checkpoint import FileSystemReader

    saved = {
        k.removeprefix("model."): tuple(v.size)
        for k, v in FileSystemReader(str(path)).read_metadata().state_dict_metadata.items()
        if k.startswith("model.") and hasattr(v, "size")
    }
    own = {k: tuple(v.shape) for k, v in model_sd.items() if isinstance(v, torch.Tensor)}
    if saved != own:
        diff = sorted(set(saved) ^ set(own)) or sorted(k for k in own if saved[k] != own[k])
        raise DataError(
            f"checkpoint {path} was written by a different model (its tensors do not match this config's "
            f"architecture; first difference: {diff[0]})"
        )


def load_sharded(path: str | Path, model: nn.Module, optimizer, scaler) -> tuple[dict, dict]:
    """Load a DCP checkpoint into `model`/`optimizer` at this process's world size (resharding as
    needed); returns (state.json, rng tensors) for the caller to restore RNG state. The caller has
    verified the manifest (load_checkpoint)."""
    # torch.distributed.checkpoint takes ~0.7 s to import; only sharded (FSDP2) runs need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    path = Path(path)
    state = read_json(path / "state.json")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    names = plain_name_of_fqn(model)
    sd = {"model": {names[k]: v for k, v in model_sd.items()}, "optim": rename_optimizer_state(optim_sd, names)}
    _check_same_model(path, sd["model"])
    dcp.load(sd, checkpoint_id=str(path))  # tensors in place; other values replaced in `sd`
    fqn_of = {plain: fqn for fqn, plain in names.items()}
    set_state_dict(
        model,
        optimizer,
        model_state_dict={fqn_of[k]: v for k, v in sd["model"].items()},
        optim_state_dict=rename_optimizer_state(sd["optim"], fqn_of),
    )
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state, load_file(path / "rng.safetensors")


def carry_training_state(src: nn.Module, src_optimizer, dst: nn.Module, dst_optimizer) -> None:
    """Copy the weights and the optimizer's state of `src` into `dst`, another preparation of the
    same architecture (another AC mode: auto AC's fallback, trainwise.train.run.rebuild_with_ac).

    Matched by the plain model's names, as a checkpoint is, so any wrapper mix maps onto any other;
    through torch.distributed.checkpoint's state_dict functions, so FSDP2's DTensor shards move
    shard to shard on the same mesh.
    """
    # torch.distributed.checkpoint takes ~0.7 s to import; only a fallback needs it
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(src, src_optimizer)
    fqn_of = {plain: fqn for fqn, plain in plain_name_of_fqn(dst).items()}
    names = {fqn: fqn_of[plain] for fqn, plain in plain_name_of_fqn(src).items()}
    set_state_dict(
        dst,
        dst_optimizer,
        model_state_dict={names[k]: v for k, v in model_sd.items()},
        optim_state_dict=rename_optimizer_state(optim_sd, names),
    )
