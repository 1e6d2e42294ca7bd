"""Served precisions (torchao int8 weight-only, bf16), the accuracy check, ONNX export, other workloads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.serve.conftest import INSTANCE
from trainwise.serve.runtime import Runtime, apply_precision, load_runtime
from trainwise.serve.schemas import request_model


def test_int8_quantizes_linear_weights_with_torchao(tab_run):
    fp32, int8 = load_runtime(str(tab_run)), load_runtime(str(tab_run), "int8")
    w32, w8 = fp32.model.head.weight, int8.model.head.weight
    assert type(w8) is not torch.nn.Parameter and type(w8).__name__ != "Tensor"  # a torchao quantized tensor subclass
    rows = [INSTANCE, {**INSTANCE, "age": 60.0}]
    p32 = [p["probabilities"]["yes"] for p in fp32.predict(rows)]
    p8 = [p["probabilities"]["yes"] for p in int8.predict(rows)]
    np.testing.assert_allclose(p8, p32, atol=0.02)
    assert p8 != p32  # quantization changed something: the int8 path really ran
    assert w32.dtype == torch.float32


def test_bf16_keeps_fp32_inputs_working(tab_run):
    bf16 = load_runtime(str(tab_run), "bf16")
    assert bf16.model.model.head.weight.dtype == torch.bfloat16
    out = bf16.predict([INSTANCE])[0]["probabilities"]
    assert abs(sum(out.values()) - 1) < 1e-5


def test_check_precision_reports_accuracy_change(tab_run, capsys):
    from trainwise.cli import main

    assert main(["serve", str(tab_run), "--set", "serve.precision=int8", "--check-precision"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == "int8" and report["n"] > 100
    assert report["accuracy_change"] == pytest.approx(report["int8"]["accuracy"] - report["fp32"]["accuracy"])
    assert abs(report["accuracy_change"]) < 0.05 and report["agreement"] > 0.9 and 0 < report["max_prob_diff"] < 0.1


def test_unknown_precision_is_a_config_error(tab_run, capsys):
    from trainwise.cli import main

    assert main(["serve", str(tab_run), "--set", "serve.precision=int4"]) == 2
    assert "serve.precision" in capsys.readouterr().err


@pytest.mark.slow
def test_export_onnx_matches_pytorch(tab_run, tmp_path, capsys):
    import onnxruntime as ort

    from trainwise.cli import main
    from trainwise.rundir import load_model

    out = tmp_path / "tab.onnx"
    assert main(["export", str(tab_run), "--onnx", str(out)]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, meta = load_model(tab_run)
    x = torch.randn(7, meta["spec"]["kwargs"]["n_features"])  # a batch size the export never saw
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)
    stored = json.loads(session.get_modelmeta().custom_metadata_map["trainwise_model_json"])
    assert stored["info"]["preprocessing"] == meta["info"]["preprocessing"]


def test_export_bad_reference(capsys, tmp_path):
    from trainwise.cli import main

    assert main(["export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def _spec_runtime(builder: str, kwargs: dict, task: str, info: dict) -> Runtime:
    from trainwise.workloads.base import build_model_from_spec

    torch.manual_seed(0)
    meta = {"task": task, "spec": {"builder": builder, "kwargs": kwargs}, "info": info}
    return Runtime(model=build_model_from_spec(meta["spec"]).eval(), meta=meta, version="t/1")


def test_vision_schema_and_predictions():
    """A model.json from before the input spec (info.input_shape) serves the generic tensor form."""
    rt = _spec_runtime(
        "digits_cnn",
        {"channels": 8, "n_layers": 1, "n_classes": 10},
        "classification",
        {"classes": [str(i) for i in range(10)], "input_shape": [1, 8, 8]},
    )
    req = request_model(rt.meta, 4)
    image = [[[0.5] * 8 for _ in range(8)]]  # (1, 8, 8)
    body = req.model_validate({"instances": [{"x": image}]})
    out = rt.predict([i.model_dump() for i in body.instances])
    with torch.inference_mode():
        ref = torch.softmax(rt.model(torch.full((1, 1, 8, 8), 0.5)), -1)[0].numpy()
    np.testing.assert_allclose([out[0]["probabilities"][str(i)] for i in range(10)], ref, rtol=1e-5)
    with pytest.raises(ValidationError) as e:
        req.model_validate({"instances": [{"x": [image[0][:7]]}]})
    assert e.value.errors()[0]["loc"] == ("instances", 0, "x")
    assert (
        e.value.errors()[0]["msg"]
        == "dimension 2 has 7 entries at x[0], expected 8 (shape [1, 8, 8]; dimension 0 is the batch)"
    )
    with pytest.raises(ValidationError, match=r"x\[0\]\[2\]\[3\] = 7.0: outside value_range \[0, 1\]"):
        req.model_validate(
            {"instances": [{"x": [[[0.5] * 8, [0.5] * 8, [0.5, 0.5, 0.5, 7.0, 0.5, 0.5, 0.5, 0.5]] + [[0.5] * 8] * 5]}]}
        )


def test_lm_next_byte_probabilities_and_continuation():
    rt = _spec_runtime("gpt", {"n_layers": 1, "n_heads": 2, "d_model": 16, "context": 16}, "lm", {"vocab_size": 256})
    req = request_model(rt.meta, 4)
    inst = req.model_validate({"instances": [{"prompt": "def f(x):", "max_new_bytes": 3}]}).instances[0].model_dump()
    out = rt.predict([inst])[0]
    with torch.inference_mode():
        logits = rt.model(torch.tensor([list(b"def f(x):")]))[0, -1]
    np.testing.assert_allclose(out["probabilities"], torch.softmax(logits, -1).numpy(), rtol=1e-5, atol=1e-7)
    ids, greedy = list(b"def f(x):"), []
    with torch.inference_mode():
        for _ in range(3):
            greedy.append(int(rt.model(torch.tensor([ids[-16:]]))[0, -1].argmax()))
            ids.append(greedy[-1])
    assert out["continuation"] == bytes(greedy).decode("utf-8", errors="replace")
    with pytest.raises(ValidationError):
        req.model_validate({"instances": [{"prompt": ""}]})


def test_apply_precision_rejects_unknown():
    from trainwise.errors import ConfigError

    with pytest.raises(ConfigError, match="serve.precision"):
        apply_precision(torch.nn.Linear(2, 2), "fp8")
