"""A full disk and unwritable run folders (issue 16, items 5 and 6): one line, exit 2, no temporary
files left, nothing already written lost, and the run resumes once the disk has room again.

The full disk is a real one: a small tmpfs mounted by the test and sized from the files a real run
writes (the checkpoint of the tiny LM is about 560 KB). Read-only folders are read-only mounts
(root ignores permission bits) or chmod for other users.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tests.train.faults import (
    assert_same_run,
    cli,
    leftovers,
    one_line_error,
    read_only,
    recipe,
    resize,
    snapshot,
    tmpfs,
    train_args,
)
from trainwise.cli import main
from trainwise.errors import TrainwiseError

PAGE = 4096  # tmpfs allocates whole pages
ROOM = 64 << 20
READ_ONLY = "read-only file system" if os.geteuid() == 0 else "permission denied"


def disk_bytes(folder: Path) -> int:
    """What the files under `folder` take on a tmpfs (whole pages)."""
    return sum(math.ceil(p.stat().st_size / PAGE) * PAGE for p in folder.rglob("*") if p.is_file())


def fill(folder: Path) -> None:
    """Fill the file system of `folder` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * PAGE)
        except OSError as e:
            assert e.errno == 28, e


# --- item 5: no space left on device ----------------------------------------------------------


def test_full_disk_while_writing_a_checkpoint(uninterrupted, tmp_path, capsys):
    checkpoint = disk_bytes(uninterrupted / "checkpoints" / "step_0000004")
    # room for the run's small files and one checkpoint, not for a second one beside it
    with tmpfs(tmp_path / "disk", checkpoint * 3 // 2 + 64 * 1024) as disk:
        run_dir = disk / "run"
        assert main(train_args(recipe(tmp_path), run_dir)) == 2
        line = one_line_error(capsys.readouterr().err)
        assert (
            f"no space left on device writing checkpoint step 8 to {run_dir / 'checkpoints'}; the last good checkpoint "
            "is step 4" in line
        )
        assert leftovers(run_dir) == []
        from trainwise.train.checkpoint_manifest import manifest_problem

        assert manifest_problem(run_dir / "checkpoints" / "step_0000004") is None  # the last good one is whole
        resize(disk, ROOM)  # the disk was freed
        assert main(["train", "--resume", str(run_dir)]) == 0
        assert_same_run(run_dir, uninterrupted)


def test_full_disk_while_writing_the_model(uninterrupted, tmp_path, capsys):
    checkpoint = disk_bytes(uninterrupted / "checkpoints" / "step_0000004")
    model = disk_bytes(uninterrupted / "model")
    # room for the small files and both checkpoints (4 and 8), not for model/
    with tmpfs(tmp_path / "disk", 2 * checkpoint + model // 2) as disk:
        run_dir = disk / "run"
        assert main(train_args(recipe(tmp_path), run_dir)) == 2
        line = one_line_error(capsys.readouterr().err)
        assert (
            f"no space left on device writing the model to {run_dir / 'model'}; the last good checkpoint is step 8"
            in line
        )
        assert f"trainwise train --resume {run_dir}" in line
        assert leftovers(run_dir) == [] and not (run_dir / "model").exists()  # no half-written model/
        resize(disk, ROOM)
        assert main(["train", "--resume", str(run_dir)]) == 0  # nothing left to train: writes model/ and summary.json
        assert_same_run(run_dir, uninterrupted)


def test_full_disk_keeps_the_previous_file_whole(tmp_path):
    from trainwise.rundir import WriteError, save_tensors_atomic, write_json

    with tmpfs(tmp_path / "disk", 256 * 1024) as disk:
        write_json(disk / "summary.json", {"status": "halted"})
        before = snapshot(disk)
        fill(disk)
        with pytest.raises(WriteError, match=f"no space left on device writing {disk / 'summary.json'}"):
            write_json(disk / "summary.json", {"status": "completed", "steps": list(range(2000))})
        with pytest.raises(WriteError, match=f"no space left on device writing {disk / 'weights.safetensors'}"):
            save_tensors_atomic({"w": torch.zeros(100_000)}, disk / "weights.safetensors")
        (disk / "filler").unlink()
        assert snapshot(disk) == before and leftovers(disk) == []


@pytest.mark.slow
def test_full_disk_under_ddp_fails_on_every_rank_with_one_line(tmp_path):
    """Two ranks write a sharded checkpoint to a full disk: both stop with the same line (neither
    waits for the other), the temporary directory is gone, and the run resumes once there is room."""
    with tmpfs(tmp_path / "disk", 256 * 1024) as disk:  # not even the first checkpoint fits
        run_dir = disk / "run"
        args = [
            "launch",
            "--nproc-per-node",
            "2",
            *train_args(recipe(tmp_path), run_dir, "parallel.strategy=ddp", "train.micro_batch_size=4")[1:],
        ]
        out = cli(args)
        assert out.returncode != 0
        lines = [
            line for line in out.stderr.splitlines() if "no space left on device writing checkpoint step 4" in line
        ]
        assert len(lines) == 2 and "there is no checkpoint yet" in lines[0], out.stderr[-3000:]  # one per rank
        assert "]: Traceback" not in out.stderr, out.stderr[
            -3000:
        ]  # no rank printed one ([rankN]: ...; torchrun's own report follows)
        assert leftovers(run_dir) == []
        resize(disk, ROOM)
        out = cli(["launch", "--nproc-per-node", "2", "--resume", str(run_dir)])
        assert out.returncode == 0, out.stderr[-3000:]
        assert json.loads((run_dir / "summary.json").read_text())["steps"] == 8


# --- item 6: run folders that cannot be written ---------------------------------------------------


def test_a_file_given_as_run_dir(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    assert main(train_args(recipe(tmp_path), path)) == 2
    assert f"--run-dir {path} is a file, not a directory" in one_line_error(capsys.readouterr().err)
    assert path.read_text() == "keep me"


def test_run_dir_inside_a_read_only_folder(tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro") as ro:
        assert main(train_args(recipe(tmp_path), ro / "run")) == 2
        assert f"--run-dir {ro / 'run'}: cannot create the run directory ({READ_ONLY})" in one_line_error(
            capsys.readouterr().err
        )
        assert list(ro.iterdir()) == []


def test_read_only_empty_run_dir(tmp_path, capsys):
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro") as ro:
        assert main(train_args(recipe(tmp_path), ro)) == 2
        assert f"--run-dir {ro}: cannot write there ({READ_ONLY})" in one_line_error(capsys.readouterr().err)


def test_resume_in_a_read_only_run_dir(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(train_args(recipe(tmp_path), run_dir, "train.halt_after_steps=4")) == 0
    capsys.readouterr()
    before = snapshot(run_dir)
    with read_only(run_dir):
        assert main(["train", "--resume", str(run_dir)]) == 2
        assert f"--resume {run_dir}: cannot write there ({READ_ONLY})" in one_line_error(capsys.readouterr().err)
    assert snapshot(run_dir) == before


def test_full_disk_during_a_metrics_append_tears_the_line_and_resume_drops_it(tmp_path):
    """A row appended to metrics.jsonl on a full disk is written in part (the rest of the file's
    last page) before the write fails: a real torn line. The error names the file; resume drops
    exactly that line."""
    from trainwise.train.rundir_setup import RunFiles, _truncate_metrics

    with tmpfs(tmp_path / "disk", 256 * 1024) as disk:
        run = RunFiles(disk, is_main=True)
        rows = [{"step": s, "loss": 1.0 / s} for s in (1, 2)]
        for row in rows:
            run.log_metrics(row)
        fill(disk)
        with pytest.raises(
            TrainwiseError,
            match=f"no space left on device writing {disk / 'metrics.jsonl'}; there is no checkpoint yet",
        ):
            run.log_metrics({"step": 3, "loss": 0.5, "padding": "x" * 3 * PAGE})
        text = (disk / "metrics.jsonl").read_text()
        assert len(text) == PAGE and not text.endswith("\n")  # torn: the page was filled, the rest refused
        (disk / "filler").unlink()
        _truncate_metrics(disk / "metrics.jsonl", after_step=2)
        assert [json.loads(line) for line in (disk / "metrics.jsonl").read_text().splitlines()] == rows
