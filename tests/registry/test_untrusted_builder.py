"""No code runs from a model artifact.

model.json's `spec.builder` names code that loading runs, with model.json's kwargs. It is resolved
only from the built-in models, the top-level package of the entry point the model was trained with
(the run's config.toml; for a registered version, the registry's tag), or modules named in
$TRAINWISE_TRUSTED_BUILDERS; and every file of model/ (model.json included) is checked against its
seal before it is read. On the code before this, a model.json naming builder `os:system` with
kwargs {"command": "touch FILE"} ran the command in evaluate, serve, export and register: only the
weights file was hashed.
"""

from __future__ import annotations

import shutil

import pytest
from mlflow import MlflowClient

from tests.serve.conftest import free_port
from trainwise.errors import DataError
from trainwise.rundir import load_model, read_json, write_json

SETTINGS = [
    "model.d_model=16",
    "model.n_layers=1",
    "train.steps=3",
    "train.warmup_steps=1",
    "train.threads=1",
    "train.eval_batches=1",
    "train.checkpoint_every=0",
    "log.progress=false",
    "log.mlflow=false",
]
TINY = [a for s in SETTINGS for a in ("--set", s)]


def _train(run_dir, *extra: str) -> int:
    from trainwise.cli import main

    return main(["train", "configs/tabular.toml", *TINY, *extra, "--run-dir", str(run_dir)])


@pytest.fixture(scope="module")
def tab_run(tiny_runs):
    """The shared real tabular run (read-only: every test here copies it before changing it)."""
    return tiny_runs.trained("good")


def plant_command(model_dir, marker, reseal: bool) -> None:
    """Rewrite model.json's builder into `os:system` touching `marker`; with `reseal`, also rewrite
    manifest.json to match, as someone who can write the whole folder would."""
    from trainwise.seal import write_manifest

    meta = read_json(model_dir / "model.json")
    write_json(
        model_dir / "model.json", {**meta, "spec": {"builder": "os:system", "kwargs": {"command": f"touch {marker}"}}}
    )
    if reseal:
        write_manifest(model_dir)


COMMANDS = {
    "evaluate": lambda run, tmp: ["evaluate", run],
    "serve": lambda run, tmp: ["serve", run, "--port", free_port()],
    "serve-check-precision": lambda run, tmp: ["serve", run, "--check-precision", "--set", "serve.precision=bf16"],
    "export": lambda run, tmp: ["export", run, "--onnx", tmp / "model.onnx"],
    "register": lambda run, tmp: ["register", run, "--name", "tampered"],
    "init_from": lambda run, tmp: [
        "train",
        "configs/tabular.toml",
        *TINY,
        "--set",
        f"model.init_from={run}",
        "--run-dir",
        tmp / "next",
    ],
}


@pytest.mark.parametrize("reseal", [False, True], ids=["model.json-edited", "manifest-rewritten-too"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_planted_builder_never_runs(tab_run, store, cli, tmp_path, command, reseal):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(tab_run, run)
    plant_command(run / "model", marker, reseal)
    try:
        code, out, err = cli(*COMMANDS[command](run, tmp_path))
    except Exception as e:  # noqa: BLE001 - a loader that ran the builder then fails on what it returned
        code, err = None, f"{type(e).__name__}: {e}"
    assert not marker.exists(), f"{command} ran the planted command ({err})"
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    if reseal:  # the seal matches: the builder itself is refused, before its module is imported
        assert "builder 'os:system' is neither a built-in model nor from an entry point of the run" in err, err
        assert "set TRAINWISE_TRUSTED_BUILDERS=os" in err, err
    else:
        assert (
            f"{run / 'model' / 'model.json'} does not match the hash recorded in {run / 'model' / 'manifest.json'}"
            in err
        ), err
    assert not (tmp_path / "next").exists() and not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize(
    "edit, file, why",
    [
        ("json-trailing-space", "model.json", "does not match the hash"),
        ("weights-byte", "weights.safetensors", "does not match the hash"),
        ("reference-byte", "reference.parquet", "does not match the hash"),
        ("reference-removed", "reference.parquet", "is missing, but"),
    ],
)
def test_any_changed_byte_of_the_model_folder_is_refused(tab_run, tmp_path, edit, file, why):
    run = tmp_path / "run"
    shutil.copytree(tab_run, run)
    load_model(run)  # intact: loads
    path = run / "model" / file
    if edit == "json-trailing-space":
        path.write_bytes(path.read_bytes() + b" ")  # still the same JSON
    elif edit == "reference-removed":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        load_model(run)
    assert str(e.value).startswith(f"{path} {why}") and str(e.value).endswith("refusing to load it"), str(e.value)


def test_a_registered_version_is_checked_against_the_registry_not_its_own_manifest(tab_run, store, cli, tmp_path):
    from trainwise.registry import register_run
    from trainwise.registry.versions import download_version

    run = tmp_path / "run"
    shutil.copytree(tab_run, run)
    mv = register_run(run, "sealed")
    artifact = download_version(MlflowClient(store), mv)  # the stored files themselves (a local store is not copied)
    marker = tmp_path / "pwned"
    plant_command(artifact, marker, reseal=True)  # the artifact store's manifest agrees; the registry does not
    for argv in (["serve", "sealed/1", "--port", free_port()], ["export", "sealed/1", "--onnx", tmp_path / "m.onnx"]):
        code, out, err = cli(*argv)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert (
            f"{artifact / 'model.json'} does not match the hash recorded in the registry (model 'sealed' version 1)"
            in err
        ), err
    assert not marker.exists()


def test_a_builder_outside_the_entry_package_needs_the_opt_in(tmp_path, cli, monkeypatch):
    entry = [
        "--set",
        "workload.name=entry",
        "--set",
        "workload.entry=tests.registry.builder_models:linear_workload",
        "--set",
        "eval.slices=[]",
    ]
    monkeypatch.delenv("TRAINWISE_TRUSTED_BUILDERS", raising=False)
    code, out, err = cli("train", "configs/tabular.toml", *TINY, *entry, "--run-dir", tmp_path / "refused")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert (
        "Workload.spec: builder 'torch.nn:Linear' is neither a built-in model nor from the package of the entry point"
        in err
    ), err
    assert "set TRAINWISE_TRUSTED_BUILDERS=torch.nn" in err and not (tmp_path / "refused").exists(), err

    monkeypatch.setenv("TRAINWISE_TRUSTED_BUILDERS", "mypkg.models, torch.nn")
    run = tmp_path / "run"
    assert cli("train", "configs/tabular.toml", *TINY, *entry, "--run-dir", run)[0] == 0
    model, meta = load_model(run)
    assert type(model).__name__ == "Linear" and meta["spec"]["builder"] == "torch.nn:Linear"
    monkeypatch.delenv("TRAINWISE_TRUSTED_BUILDERS")
    with pytest.raises(DataError, match="set TRAINWISE_TRUSTED_BUILDERS=torch.nn"):
        load_model(run)
    monkeypatch.setenv("TRAINWISE_TRUSTED_BUILDERS", "torch.nn.")
    code, out, err = cli("evaluate", run)
    assert code == 2 and "$TRAINWISE_TRUSTED_BUILDERS item 'torch.nn.': expected a module name" in err, err


def test_a_model_of_your_own_entry_point_loads_from_its_run_and_from_the_registry(tmp_path, store, monkeypatch):
    from trainwise.registry import register_run
    from trainwise.serve.runtime import load_runtime

    run = tmp_path / "seq"
    assert (
        _train(
            run,
            "--set",
            "workload.name=entry",
            "--set",
            "workload.entry=tests.user_models:sequence_workload",
            "--set",
            "eval.slices=[]",
        )
        == 0
    )
    model, meta = load_model(run)  # the run's config.toml names the entry point: tests.* builders load
    assert meta["spec"]["builder"] == "tests.user_models:SequenceNet"
    mv = register_run(run, "seq")
    assert mv.tags["trainwise.entry"] == "tests.user_models:sequence_workload"
    runtime = load_runtime("seq/1")  # the registry's tag names it: no config.toml beside the artifact
    assert runtime.version == "seq/1" and type(runtime.model).__name__ == "SequenceNet"

    lone = tmp_path / "copied" / "model"  # the same files without their run: which entry trained them is unknown
    shutil.copytree(run / "model", lone)
    with pytest.raises(DataError, match="set TRAINWISE_TRUSTED_BUILDERS=tests.user_models"):
        load_model(lone)
    monkeypatch.setenv("TRAINWISE_TRUSTED_BUILDERS", "tests.user_models")
    assert type(load_model(lone)[0]).__name__ == "SequenceNet"
