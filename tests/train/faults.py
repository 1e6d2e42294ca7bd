"""Real faults for the trainer's tests: a full disk (a small tmpfs), a read-only folder (a read-only
bind mount for root, who ignores permission bits; chmod for anyone else), a SIGKILL at a chosen
moment (the trainer's test hooks), and the comparisons that say a run survived them whole."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import TINY_LM

ROOT = Path(__file__).resolve().parents[2]
# Summary fields that measure time (or count timed steps): they differ between any two runs.
TIME_FIELDS = {
    "median_step_ms",
    "min_step_ms",
    "max_step_ms",
    "timed_steps",
    "tokens_per_s",
    "compile_warmup_s",
    "wall_s",
}


def _mount(args: list[str], what: str) -> None:
    out = subprocess.run(["mount", *args], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(
            f"cannot {what} here (mount: {out.stderr.strip() or out.returncode}); this fault needs root or "
            "CAP_SYS_ADMIN, as in CI"
        )


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int):
    """A tmpfs of `size_bytes` at `path`: a real disk that fills up."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)], "mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path: Path, size_bytes: int) -> None:
    """Give the tmpfs at `path` room again (the disk was freed)."""
    subprocess.run(["mount", "-o", f"remount,size={size_bytes}", str(path)], check=True)


@contextlib.contextmanager
def read_only(path: Path):
    """Make the folder `path` read-only for this process, as the file system enforces it."""
    if os.geteuid() == 0:
        _mount(["--bind", "-o", "ro", str(path), str(path)], "bind-mount a folder read-only")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if p.is_dir()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `folder` (temporary files included)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders a writer left behind."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.name.startswith(".tmp_") or p.name.endswith(".tmp") or p.name.endswith(".creating")
    )


def recipe(tmp_path: Path) -> Path:
    """A recipe file with nothing in it, so that `trainwise train RECIPE --set TINY_LM...` is tiny_lm_config()."""
    path = tmp_path / "tiny.toml"
    path.write_text("[train]\nthreads = 1\n")
    return path


def cli(args: list[str], env: dict | None = None, timeout_s: int = 300) -> subprocess.CompletedProcess:
    """`trainwise ARGS` in a new process: the exit code and stderr the user sees."""
    return subprocess.run(
        [sys.executable, "-m", "trainwise.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def train_args(recipe_path: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(recipe_path),
        *(a for item in (*TINY_LM, *extra) for a in ("--set", item)),
        "--run-dir",
        str(run_dir),
    ]


def one_line_error(stderr: str) -> str:
    """The error line of a refused command; fails on a traceback or more than one line of error."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("trainwise ") and ": error: " in line]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def metrics(run_dir: Path) -> list[dict]:
    timing = ("step_ms", "tokens_per_s")
    return [
        {k: v for k, v in json.loads(line).items() if k not in timing}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def summary(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "summary.json").read_text()).items() if k not in TIME_FIELDS}


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """The run equals the uninterrupted reference: every logged row (but its timings), the weights
    bit for bit, and every summary field that does not measure time."""
    assert metrics(run_dir) == metrics(reference)
    a, b = load_file(run_dir / "model" / "weights.safetensors"), load_file(reference / "model" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert summary(run_dir) == summary(reference)
    assert json.loads((run_dir / "summary.json").read_text())["median_step_ms"] is not None
