"""Resuming after the faults of issue 16 (items 4, 7, 8, 10): a damaged or tampered checkpoint, a
torn metrics line, SIGKILLs at the awkward moments, and a change of activation-checkpointing mode
between the run that wrote a checkpoint and the run that resumes it. Every surviving run must
equal the uninterrupted one (conftest.uninterrupted)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import tiny_lm_config
from tests.train.faults import assert_same_run, cli, leftovers, metrics, one_line_error, recipe, snapshot, train_args
from trainwise.cli import main
from trainwise.config import load_config
from trainwise.errors import DataError
from trainwise.train.loop import train

CKPT = "checkpoints/step_{:07d}"


def corrupt(path: Path) -> None:
    """Flip one byte in the middle of `path`: bit rot, a bad sector, an edit."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def resume(run_dir: Path, *overrides: str):
    return train(load_config(run_dir / "config.toml", ["train.halt_after_steps=0", *overrides]), run_dir, resume=True)


# --- item 7: a damaged newest checkpoint -------------------------------------------------------


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(uninterrupted, tmp_path, capsys):
    run_dir = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    corrupt(run_dir / CKPT.format(8) / "model.safetensors")  # still a readable safetensors file: only the hash knows
    assert main(["train", "--resume", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: skipping checkpoint step_0000008: the SHA-256 of model.safetensors differs from its manifest.json; "
        "resuming from step_0000004" in err
    )
    assert_same_run(run_dir, uninterrupted)  # steps 5-8 trained again from step 4


def test_no_checkpoint_that_verifies_is_one_error_and_changes_nothing(uninterrupted, tmp_path, capsys):
    run_dir = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    corrupt(run_dir / CKPT.format(8) / "optim.safetensors")
    (run_dir / CKPT.format(4) / "state.json").write_text(
        (run_dir / CKPT.format(4) / "state.json").read_text().replace('"step": 4', '"step": 5')
    )
    before = snapshot(run_dir)
    assert main(["train", "--resume", str(run_dir)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert (
        "no checkpoint there matches its manifest" in line and "step_0000008: the SHA-256 of optim.safetensors" in line
    )
    assert "step_0000004: the SHA-256 of state.json" in line
    assert snapshot(run_dir) == before  # metrics.jsonl was not cut back, nothing written


# --- item 4: checkpoints are verified before a byte is parsed -----------------------------------


class _OpensAFile:
    """What a tampered pickle can do when loaded: here, create a file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_tampered_dcp_metadata_is_refused_before_pickle_runs(tmp_path, capsys):
    """A DDP run's checkpoint (torch.distributed.checkpoint, its .metadata is pickle) with a
    .metadata that runs code when unpickled: resume refuses it and the code never runs."""
    run_dir = tmp_path / "run"
    assert (
        main(train_args(recipe(tmp_path), run_dir, "parallel.strategy=ddp", "train.halt_after_steps=4")) == 0
    )  # a group of one
    ckpt = run_dir / CKPT.format(4)
    marker = tmp_path / "code-ran"
    (ckpt / ".metadata").write_bytes(pickle.dumps(_OpensAFile(marker)))
    code = main(
        ["train", "--resume", str(run_dir), "--set", "parallel.strategy=single", "--set", "train.halt_after_steps=0"]
    )
    assert not marker.exists()
    assert code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "step_0000004: .metadata has" in line and "manifest" in line


def test_load_checkpoint_refuses_a_file_the_manifest_does_not_list(uninterrupted, tmp_path):
    from trainwise.train.checkpoint import load_checkpoint
    from trainwise.train.step import make_optimizer
    from trainwise.workloads.build import build_workload

    ckpt = Path(shutil.copytree(uninterrupted / CKPT.format(8), tmp_path / "step_0000008"))
    model = build_workload(tiny_lm_config()).model
    optimizer = make_optimizer(model, 1e-3, 0.0, (0.9, 0.95))
    assert load_checkpoint(ckpt, model, optimizer, None)["step"] == 8  # verifies
    (ckpt / "extra.distcp").write_bytes(b"\x80\x04N.")
    with pytest.raises(DataError, match="extra.distcp is not in its manifest.json"):
        load_checkpoint(ckpt, model, optimizer, None)


# --- item 8: a torn last line in metrics.jsonl --------------------------------------------------


def test_torn_last_metrics_line_is_dropped_on_resume(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_lm_config("train.halt_after_steps=4"), run_dir)
    with open(run_dir / "metrics.jsonl", "ab") as f:  # what a kill during the append of step 5's row leaves
        f.write(b'{"step": 5, "loss": 2.71')
    resume(run_dir)
    assert_same_run(run_dir, uninterrupted)


def test_damaged_line_before_the_last_is_an_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_lm_config("train.halt_after_steps=4"), run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "metrics.jsonl line 2 is not JSON" in one_line_error(capsys.readouterr().err)


# --- item 10: a resumed run's summary -----------------------------------------------------------


def test_resumed_summary_equals_the_uninterrupted_one(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_lm_config("train.halt_after_steps=4"), run_dir)
    resume(run_dir)
    assert_same_run(run_dir, uninterrupted)  # final_train_loss averages the last 10 losses of the whole run


def test_kill_after_the_final_checkpoint_then_resume(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    out = cli(train_args(recipe(tmp_path), run_dir), env={"TRAINWISE_TEST_KILL": "0:8"})  # SIGKILL after checkpoint 8
    assert out.returncode == -9, out.stderr[-2000:]
    assert (
        (run_dir / CKPT.format(8)).is_dir()
        and not (run_dir / "summary.json").exists()
        and not (run_dir / "model").exists()
    )
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert_same_run(run_dir, uninterrupted)


def test_kill_while_writing_a_checkpoint_leaves_nothing_after_resume(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    out = cli(train_args(recipe(tmp_path), run_dir), env={"TRAINWISE_TEST_KILL_IN_CHECKPOINT": "8"})
    assert out.returncode == -9, out.stderr[-2000:]
    stale = [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp_step_0000008_")]
    assert stale and (stale[0] / "model.safetensors").is_file()  # the killed writer's half-written checkpoint
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert leftovers(run_dir) == []
    assert_same_run(run_dir, uninterrupted)


# --- checkpoints carry no wrapper level: resume under another activation-checkpointing mode ----------


def test_resume_under_another_ac_mode_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_lm_config("train.halt_after_steps=4", "memory.ac=none"), run_dir)
    assert all(".block." not in k for k in load_file(run_dir / CKPT.format(4) / "model.safetensors"))
    result = resume(run_dir, "memory.ac=full")
    assert result.summary["ac"] == "full"
    assert metrics(run_dir) == metrics(uninterrupted)
    a, b = (
        load_file(run_dir / "model" / "weights.safetensors"),
        load_file(uninterrupted / "model" / "weights.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_dcp_checkpoint_resumes_under_another_ac_mode(uninterrupted, tmp_path):
    """A DDP checkpoint written with every block checkpointed (the wrapper's `.block.` level) loads
    into a model without activation checkpointing, and the other way round."""
    from torch.distributed.checkpoint import FileSystemReader

    run_dir = tmp_path / "run"
    assert (
        main(
            train_args(recipe(tmp_path), run_dir, "parallel.strategy=ddp", "memory.ac=full", "train.halt_after_steps=4")
        )
        == 0
    )
    names = (
        FileSystemReader(str(run_dir / CKPT.format(4))).read_metadata().state_dict_metadata
    )  # verified: written just now
    assert any(k.startswith("model.blocks.0.") for k in names) and not any(".block." in k for k in names)
    resume(run_dir, "memory.ac=none")
    assert json.loads((run_dir / "summary.json").read_text())["ac"] == "none"
    torch.testing.assert_close(
        [r["loss"] for r in metrics(run_dir)], [r["loss"] for r in metrics(uninterrupted)], rtol=1e-5, atol=0
    )
    a, b = (
        load_file(run_dir / "model" / "weights.safetensors"),
        load_file(uninterrupted / "model" / "weights.safetensors"),
    )
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
