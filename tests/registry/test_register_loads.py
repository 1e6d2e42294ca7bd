"""Registering loads the model first: a version that serve or export could not load is never created."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file, save_file

from tests.registry.test_bad_input import snapshot
from trainwise.rundir import MODEL_JSON, MODEL_WEIGHTS, file_sha256, read_json, write_json
from trainwise.seal import write_manifest

TINY = [
    "model.d_model=16",
    "model.n_layers=2",
    "train.steps=2",
    "train.warmup_steps=1",
    "train.threads=1",
    "train.eval_batches=1",
    "log.progress=false",
    "log.mlflow=false",
    "memory.ac=full",
]


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    """A real run trained with activation checkpointing (the case the user could not evaluate)."""
    from trainwise.cli import main

    run = tmp_path_factory.mktemp("runs") / "ac-full"
    assert main(["train", "configs/tabular.toml", *[a for o in TINY for a in ("--set", o)], "--run-dir", str(run)]) == 0
    return run


def test_a_run_trained_with_activation_checkpointing_registers(checkpointed_run, store, cli):
    code, out, err = cli("register", checkpointed_run, "--name", "ac-model")
    assert code == 0, err


def test_weights_saved_with_wrapper_names_are_not_registered(checkpointed_run, store, cli, tmp_path):
    """What trainwise wrote before the fix for memory.ac = full: wrapper names, a hash that matches them."""
    old = tmp_path / "old"
    shutil.copytree(checkpointed_run, old)
    weights = old / "model" / MODEL_WEIGHTS
    save_file({k.replace("blocks.0.", "blocks.0.block."): v for k, v in load_file(weights).items()}, weights)
    write_json(
        old / "model" / MODEL_JSON, {**read_json(old / "model" / MODEL_JSON), "weights_sha256": file_sha256(weights)}
    )
    write_manifest(old / "model")  # its seal matched those files too
    before = snapshot(store)
    code, out, err = cli("register", old, "--name", "ac-model")
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert (
        f"refusing to register {old}" in err
        and "does not fit the architecture" in err
        and "blocks.0.block.fc.bias" in err
    )
    assert snapshot(store) == before
