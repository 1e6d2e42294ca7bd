"""A user's own sequence model is first-class: trained through `workload.name=entry`, then evaluated,
served and exported by the same commands as the built-ins, from its declared input alone.

The model (tests/user_models.py) is a GRU over (N, T, C) = (N, 10, 3) with its own block class. On
the code before the input spec, `evaluate` crashed in robustness (a (T, C) spread against a T-wide
mask), `serve` with KeyError 'input_schema' and `export` with KeyError 'n_features'.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.serve.conftest import running_server, serve_settings
from tests.user_models import CHANNELS, CLASSES, STEPS, trend_split
from trainwise.rundir import load_model, read_json
from trainwise.train.parallel import free_port
from trainwise.workloads.inputs import tensor_input

RECIPE = str(
    Path(__file__).resolve().parents[1] / "configs" / "vision.toml"
)  # a small classifier's recipe, as README uses
TRAIN = [
    RECIPE,
    "--set",
    "workload.name=entry",
    "--set",
    "model.d_model=16",
    "--set",
    "model.n_layers=1",
    "--set",
    "train.steps=30",
    "--set",
    "train.micro_batch_size=64",
    "--set",
    "train.global_batch_size=64",
    "--set",
    "train.threads=1",
    "--set",
    "train.checkpoint_every=0",
    "--set",
    "log.mlflow=false",
    "--set",
    "log.progress=false",
]


def _train(run_dir, entry: str):
    from trainwise.cli import main

    assert main(["train", *TRAIN, "--set", f"workload.entry=tests.user_models:{entry}", "--run-dir", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("user") / "seq", "sequence_workload")


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory):
    """The same model trained without declaring its input (what a user had before the spec)."""
    return _train(tmp_path_factory.mktemp("user") / "bare", "undeclared_sequence_workload")


def _probabilities(run_dir, x: torch.Tensor) -> np.ndarray:
    model, _ = load_model(run_dir)
    with torch.inference_mode():
        return torch.softmax(model.eval()(x), dim=-1).numpy()


def test_the_declared_input_reaches_model_json(seq_run, bare_run):
    assert read_json(seq_run / "model" / "model.json")["input"] == tensor_input((STEPS, CHANNELS), "float32")
    assert read_json(bare_run / "model" / "model.json")["input"] is None


def test_evaluate_reports_robustness_fitting_a_sequence(seq_run, tmp_path, capsys):
    from trainwise.cli import main
    from trainwise.evaluate.metrics import compute_metrics
    from trainwise.evaluate.predict import predict_split

    assert main(["evaluate", str(seq_run), "--out", str(tmp_path), "--bootstrap", "10"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    rob = m["robustness"]
    assert {"gaussian_noise_0.5sd", "dropout_0.1", "shifted_split"} <= set(rob) and "skipped" not in rob
    for name in ("gaussian_noise_0.5sd", "dropout_0.1"):
        assert rob[name]["n"] == m["n"] == 256
        assert 0 <= rob[name]["accuracy"]["value"] <= 1
        assert rob[name]["accuracy"]["delta"] == pytest.approx(rob[name]["accuracy"]["value"] - m["accuracy"])
    # the shifted split's numbers are the model's own on that split
    model, _ = load_model(seq_run)
    shifted = compute_metrics(
        predict_split(model, trend_split(256, 4, noise_sd=0.8), "classification", list(CLASSES)),
        "classification",
        list(CLASSES),
    )
    assert rob["shifted_split"]["accuracy"]["value"] == pytest.approx(shifted["accuracy"])
    assert "dropout_0.1" in (tmp_path / "report.html").read_text()


def test_tensor_perturbations_have_the_documented_sizes():
    from trainwise.evaluate.robustness import perturbations

    split = trend_split(4000, 7)
    spec = tensor_input((STEPS, CHANNELS))
    variants = perturbations(split, spec)
    noise = variants["gaussian_noise_0.5sd"].inputs - split.inputs
    ratio = noise.std(dim=0) / split.inputs.std(dim=0)  # per element (t, c): 0.5 of its own spread
    assert ratio.shape == (STEPS, CHANNELS) and torch.allclose(ratio, torch.full_like(ratio, 0.5), atol=0.05)
    dropped = (variants["dropout_0.1"].inputs == 0) & (split.inputs != 0)
    assert 0.09 < dropped.float().mean() < 0.11
    assert torch.equal(variants["dropout_0.1"].targets, split.targets)
    ranged = perturbations(split, tensor_input((STEPS, CHANNELS), value_range=(-1.0, 1.0)))
    x = ranged["gaussian_noise_0.1_of_range"].inputs
    assert x.min() >= -1 and x.max() <= 1  # kept inside the declared range


def test_serve_answers_tensor_requests_like_the_model(seq_run):
    from trainwise.serve.runtime import load_runtime

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, STEPS, CHANNELS, generator=g)
    with running_server(load_runtime(str(seq_run)), serve_settings()) as (url, _):
        ok = httpx.post(f"{url}/v1/predict", json={"instances": [{"x": e.tolist()} for e in x]})
        short_row = x[0].tolist()
        short_row[4] = short_row[4][:2]
        bad_shape = httpx.post(f"{url}/v1/predict", json={"instances": [{"x": short_row}]})
        too_few = httpx.post(f"{url}/v1/predict", json={"instances": [{"x": x[0, :9].tolist()}]})
        text = httpx.post(f"{url}/v1/predict", json={"instances": [{"x": [["a", 1, 2]] * STEPS}]})
        openapi = httpx.get(f"{url}/openapi.json").json()
        info = httpx.get(f"{url}/v1/model").json()
    assert ok.status_code == 200, ok.text
    got = np.array([[p["probabilities"][c] for c in CLASSES] for p in ok.json()["predictions"]])
    np.testing.assert_allclose(got, _probabilities(seq_run, x), rtol=1e-5, atol=1e-6)
    assert bad_shape.status_code == 422 and bad_shape.json()["detail"][0] == {
        "field": "instances[0].x",
        "type": "tensor_shape",
        "message": "dimension 2 has 2 entries at x[4], expected 3 (shape [10, 3]; dimension 0 is the batch)",
    }
    assert too_few.status_code == 422 and too_few.json()["detail"][0]["message"].startswith(
        "dimension 1 has 9 entries, expected 10"
    )
    assert (
        text.status_code == 422
        and text.json()["detail"][0]["message"] == "x[0][0] = 'a': expected a JSON number (dtype float32)"
    )
    x_schema = openapi["components"]["schemas"]["TensorInstance"]["properties"]["x"]
    assert (x_schema["minItems"], x_schema["items"]["maxItems"], x_schema["items"]["items"]["type"]) == (
        10,
        3,
        "number",
    )
    assert info["input"] == tensor_input((STEPS, CHANNELS), "float32")


def test_export_builds_its_example_from_the_spec(seq_run, tmp_path, capsys):
    import onnxruntime as ort

    from trainwise.cli import main

    out = tmp_path / "seq.onnx"
    assert main(["export", str(seq_run), "--onnx", str(out)]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(5, STEPS, CHANNELS)  # a batch size the export never saw
    got = session.run(None, {"input": x.numpy()})[0]
    model, _ = load_model(seq_run)
    with torch.inference_mode():
        np.testing.assert_allclose(got, model.eval()(x).numpy(), atol=1e-5)


def test_an_undeclared_input_gets_one_clear_error_from_serve_and_export(bare_run, tmp_path, capsys):
    from trainwise.cli import main

    assert main(["serve", str(bare_run), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "trainwise serve needs to know the model's input" in err and str(bare_run / "model" / "model.json") in err
    assert "input=tensor_input(shape, dtype)" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["export", str(bare_run), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "trainwise export needs to know the model's input" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_evaluate_without_a_spec_skips_robustness_and_says_why(bare_run, tmp_path, capsys):
    from trainwise.cli import main

    assert main(["evaluate", str(bare_run), "--out", str(tmp_path), "--bootstrap", "10"]) == 0
    assert "robustness perturbations skipped: the model declares no input" in capsys.readouterr().out
    rob = json.loads((tmp_path / "metrics.json").read_text())["robustness"]
    assert set(rob) == {"skipped", "shifted_split"} and "declares no input" in rob["skipped"]
    assert (
        "Workload(..., shifted=Split(...))" in rob["shifted_split"]["note"]
        and "workload.shifted" not in rob["shifted_split"]["note"]
    )
    assert "skipped: the model declares no input" in (tmp_path / "report.html").read_text()


def test_an_entry_module_in_the_current_directory_imports(tmp_path, monkeypatch):
    """README's `mypkg/workload.py`, run from its folder through the `trainwise` script (whose sys.path lacks the
    cwd)."""
    import sys

    from trainwise.workloads.user import import_entry

    (tmp_path / "mypkg_readme").mkdir()
    (tmp_path / "mypkg_readme" / "workload.py").write_text("def make_workload(cfg):\n    return 'made'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mypkg_readme", raising=False)
    monkeypatch.delitem(sys.modules, "mypkg_readme.workload", raising=False)
    assert import_entry("mypkg_readme.workload:make_workload")(None) == "made"
