"""Device facts: the JSON keys other tools read, and warnings derived from measurements only."""

from __future__ import annotations

import json

import torch

from trainwise.cli import main
from trainwise.env import dtype_warnings, measure_matmul_gflops


def test_info_json_has_measured_throughput(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAINWISE_CACHE", str(tmp_path))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info["matmul_gflops"]) >= {"fp32", "bf16", "fp16"}
    assert info["matmul_gflops"]["fp32"] > 0 and isinstance(info["warnings"], list)
    assert list(tmp_path.glob("info-*.json"))  # cached per machine
    assert main(["info"]) == 0 and "measured peak matmul throughput" in capsys.readouterr().out


def test_slow_dtype_warning_comes_from_the_numbers():
    cpu = torch.device("cpu")
    slow = dtype_warnings({"fp32": 300.0, "bf16": 1200.0, "fp16": 3.0}, cpu)
    assert any("fp16 matmuls measured 100.0x slower than fp32" in w for w in slow)
    assert not any(w.startswith("bf16") for w in slow)
    fast = dtype_warnings({"fp32": 300.0, "bf16": 1200.0, "fp16": 290.0}, cpu)
    assert not any("slower than fp32" in w for w in fast)


def test_measurement_is_positive_and_finite():
    rate = measure_matmul_gflops(torch.float32, torch.device("cpu"), n=128, seconds=0.05, repeats=3)
    assert 0 < rate < 1e6
