"""manifest.json: the size and SHA-256 of every file of a checkpoint, written last, checked first.

Checkpoints are trusted input. A DDP/FSDP2 checkpoint's `.metadata` is read by
torch.distributed.checkpoint with pickle, so loading one runs whatever it encodes, and every
checkpoint restores the optimizer and RNG state the run continues from. A checkpoint is therefore
loaded only when every one of its files matches the hash written with it: a file that was
corrupted, modified, added or removed is refused before a byte of it is parsed. The manifest lives
beside the files it covers, so it stops damage and single altered files; whoever can rewrite a whole
run folder can also rewrite its manifest, so treat a run folder from elsewhere like code you run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from trainwise.rundir import file_sha256, write_json

MANIFEST = "manifest.json"
FORMAT = "trainwise-checkpoint/1"
_STEP_DIR = re.compile(r"step_(\d{7})")
KEEP_CHECKPOINTS = 2  # the newest and the one before it, to fall back on if the newest is damaged


def hash_files(root: Path, names) -> dict[str, dict]:
    """{relative name: {"sha256", "bytes"}} of the files `names` under `root`."""
    return {name: {"sha256": file_sha256(root / name), "bytes": (root / name).stat().st_size} for name in sorted(names)}


def _present(ckpt_dir: Path) -> dict[str, Path]:
    """Every entry under ckpt_dir except the manifest, by its relative name."""
    return {
        p.relative_to(ckpt_dir).as_posix(): p
        for p in ckpt_dir.rglob("*")
        if p.name != MANIFEST and (p.is_symlink() or not p.is_dir())
    }


def write_manifest(ckpt_dir: Path, step: int, hashed: dict[str, dict] | None = None) -> None:
    """Write ckpt_dir/manifest.json over every file in ckpt_dir; `hashed` are entries already
    computed (by the ranks that wrote those files), the rest are hashed here."""
    files = dict(hashed or {})
    files.update(hash_files(ckpt_dir, [name for name in _present(ckpt_dir) if name not in files]))
    write_json(ckpt_dir / MANIFEST, {"format": FORMAT, "step": step, "files": files})


def _read_manifest(ckpt_dir: Path) -> tuple[dict, str | None]:
    """(the manifest's files, None), or ({}, what is wrong with the manifest itself)."""
    path = ckpt_dir / MANIFEST
    if not path.is_file():
        return {}, f"it has no {MANIFEST}"
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}, f"its {MANIFEST} is not valid JSON"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(files, dict)
        or manifest.get("format") != FORMAT
        or not all(isinstance(v, dict) for v in files.values())
    ):
        return {}, f"its {MANIFEST} is not a {FORMAT} manifest"
    if ckpt_dir.name.startswith("step_") and manifest.get("step") != int(ckpt_dir.name.removeprefix("step_")):
        return {}, f"its {MANIFEST} is for step {manifest.get('step')}, not {ckpt_dir.name}"
    return files, None


def manifest_problem(ckpt_dir: Path) -> str | None:
    """None when every file of checkpoint `ckpt_dir` matches its manifest; else what does not."""
    files, problem = _read_manifest(ckpt_dir)
    if problem:
        return problem
    present = _present(ckpt_dir)
    for name in sorted(set(files) | set(present)):
        if name not in present:
            return f"{name} is missing"
        if name not in files:
            return f"{name} is not in its {MANIFEST}"
        if present[name].is_symlink():
            return f"{name} is a symbolic link"
        if present[name].stat().st_size != files[name].get("bytes"):
            return f"{name} has {present[name].stat().st_size} bytes, its {MANIFEST} says {files[name].get('bytes')}"
    for name in sorted(files):  # sizes first: a truncated file is named without reading everything
        if file_sha256(present[name]) != files[name].get("sha256"):
            return f"the SHA-256 of {name} differs from its {MANIFEST}"
    return None


def checkpoint_dirs(ckpt_root: str | Path) -> list[Path]:
    """The complete checkpoint directories (step_NNNNNNN), newest first."""
    root = Path(ckpt_root)
    found = [p for p in root.iterdir() if _STEP_DIR.fullmatch(p.name) and p.is_dir()] if root.is_dir() else []
    return sorted(found, key=lambda p: p.name, reverse=True)


def prune_checkpoints(ckpt_root: str | Path, newest: Path) -> None:
    """Keep `newest` and the KEEP_CHECKPOINTS - 1 before it; deleting is best effort."""
    older = [p for p in checkpoint_dirs(ckpt_root) if p.name != newest.name]
    for old in older[KEEP_CHECKPOINTS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
