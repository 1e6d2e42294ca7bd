"""The run directory: the contract between stages (see docs/architecture.md).

Everything here writes atomically (a temporary file in the same directory, then `os.replace`), so
an interrupted process never leaves a half-written file behind, and models are saved without
pickle: tensors in safetensors, everything else in JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainwise.errors import DataError

MODEL_WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} as JSON")


def read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} does not exist")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p} is not valid JSON: {e}") from None


def save_tensors_atomic(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# model/ : weights.safetensors + model.json


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with wrapper prefixes (torch.compile, DDP) removed, in fp32.

    FP8 training swaps nn.Linear for torchao's Float8Linear, whose weights are plain fp32
    parameters with the same names, so the saved model loads into the plain architecture.
    """
    out = {}
    for name, t in model.state_dict().items():
        name = name.replace("_orig_mod.", "").removeprefix("module.")
        if hasattr(t, "full_tensor"):  # a DTensor shard under FSDP2
            t = t.full_tensor()
        out[name] = t.detach().float() if t.is_floating_point() else t.detach()
    return out


def save_model(model: nn.Module, model_dir: str | Path, meta: dict) -> None:
    """Write model/weights.safetensors and model/model.json (spec, task, info, weights hash)."""
    model_dir = Path(model_dir)
    weights = model_dir / MODEL_WEIGHTS
    save_tensors_atomic(clean_state_dict(model), weights)
    write_json(model_dir / MODEL_JSON, {**meta, "weights_sha256": file_sha256(weights)})


def _model_files(model_dir: str | Path, verify: bool) -> tuple[Path, dict, Path]:
    """(model dir, model.json contents, weights path) of a model or run directory, hash-checked."""
    model_dir = Path(model_dir)
    if (model_dir / "model" / MODEL_JSON).is_file():
        model_dir = model_dir / "model"
    if not (model_dir / MODEL_JSON).is_file():
        raise DataError(f"{model_dir} holds no model (expected {MODEL_JSON} and {MODEL_WEIGHTS}; is it a finished run directory?)")
    meta = read_json(model_dir / MODEL_JSON)
    weights = model_dir / MODEL_WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights} is missing")
    if verify and meta.get("weights_sha256") and file_sha256(weights) != meta["weights_sha256"]:
        raise DataError(f"{weights} does not match the hash recorded in {model_dir / MODEL_JSON}: the file was modified or corrupted; refusing to load it")
    return model_dir, meta, weights


def load_model(model_dir: str | Path, verify: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild the model from model.json's spec and load its weights; returns (model in eval mode, meta).

    `model_dir` may be a run directory (its model/ is used). With `verify`, a weights file whose
    hash differs from the one recorded at save time is refused.
    """
    from trainwise.workloads.base import build_model_from_spec

    model_dir, meta, weights = _model_files(model_dir, verify)
    model = build_model_from_spec(meta["spec"])
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    if missing or unexpected:
        raise DataError(f"{weights} does not fit the architecture in model.json (missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    return model.eval(), meta


def load_weights_into(model: nn.Module, model_dir: str | Path, what: str = "model.init_from") -> dict:
    """Copy a saved model's weights into `model` (same architecture); returns its model.json.

    Every parameter and buffer must be present with the same shape: a partial load would silently
    train a half-initialised model.
    """
    try:
        _, meta, weights = _model_files(model_dir, verify=True)
    except DataError as e:
        raise DataError(f"{what} = {str(model_dir)!r}: {e}") from None
    saved = load_file(weights)
    own = clean_state_dict(model)
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    wrong = [f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in saved and saved[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise DataError(
            f"{what} = {str(model_dir)!r}: its weights do not fit this model (missing: {missing[:3]}, unexpected: {unexpected[:3]}, "
            f"shape (saved vs this model): {wrong[:3]}); train from it with the same workload and model settings"
        )
    model.load_state_dict(saved, strict=True)
    return meta
