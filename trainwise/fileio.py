"""Files written atomically, JSON, hashes: the bottom layer of the run directory (trainwise.rundir)
and of model-folder seals (trainwise.seal), which both write through it.

Every write goes through a temporary file in the same directory, then `os.replace`, so an
interrupted process never leaves a half-written file behind; a full disk, a read-only folder and
the like raise WriteError, one line for the user.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from trainwise.errors import DataError, TrainwiseError

# the process umask, read once at import: os.umask can only be read by setting it (and then restoring it)
_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(TrainwiseError):
    """A file could not be written (the disk is full, the folder read-only or not ours): one line, exit 2.

    `reason` is short and lower-case ("no space left on device"), so callers can rephrase the
    message around it (which checkpoint, which one is still good)."""

    def __init__(self, reason: str, path: str | Path, message: str | None = None):
        self.reason, self.path = reason, Path(path)
        super().__init__(message or f"{reason} writing {path}")

    def __reduce__(self):  # pickles (e.g. between ranks) with its arguments
        return (WriteError, (self.reason, str(self.path), str(self)))


# errno -> the words the user reads; anything else gets the system's own text
_WRITE_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a path component is a file, not a directory",
}


def write_failure_reason(e: BaseException, where: str | Path | None = None) -> str | None:
    """Why a write failed, for an OSError or an error raised because of one: safetensors'
    SafetensorError says only '... (os error 28)', torch.save's zip writer raises a RuntimeError
    whose __context__ is the OSError. When that trail was lost (an exception pickled between
    ranks) and the file system of `where` is full, it is "no space left on device". None for
    errors that are no fault of the file system."""
    seen = e
    while seen is not None:
        if isinstance(seen, WriteError):
            return seen.reason
        code = seen.errno if isinstance(seen, OSError) else None
        found = re.search(r"os error (\d+)", str(seen)) if code is None else None
        code = int(found.group(1)) if found else code
        if code is not None:
            return _WRITE_REASONS.get(code) or os.strerror(code).lower()
        seen = seen.__cause__ or seen.__context__
    if where is not None and _free_bytes(where) < (1 << 20):
        return _WRITE_REASONS[errno.ENOSPC]
    return None


def _free_bytes(where: str | Path) -> int:
    path = Path(where)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file and a rename; on failure no temporary file is
    left and the old `path`, if any, is untouched. A full disk, a read-only folder and the like
    raise WriteError."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = write_failure_reason(e) if isinstance(e, OSError) else None
        if reason:
            raise WriteError(reason, path) from None
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


def save_tensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """`write_atomic` for a safetensors file (the same guarantees, the same WriteError)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = write_failure_reason(e) if isinstance(e, Exception) else None  # safetensors wraps the OSError
        if reason:
            raise WriteError(reason, path) from None
        raise


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
