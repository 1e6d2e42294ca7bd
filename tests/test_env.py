"""Device facts: the JSON keys other tools read, and warnings derived from measurements only."""

from __future__ import annotations

import json

import pytest
import torch

import trainwise.env as env_module
from tests.helpers import ONE_BLOCK_LM, set_args
from trainwise.cli import main
from trainwise.config import load_config
from trainwise.env import (
    PEAK_KINDS,
    dtype_warnings,
    fp8_operands,
    matmul_mode,
    measure_gemm_gflops,
    measure_matmul_gflops,
)
from trainwise.model_peaks import measure_model_peaks


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


TINY = set_args(*ONE_BLOCK_LM)


def test_info_measures_fp8_tf32_only_on_cuda_and_the_models_own_gemm_shapes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRAINWISE_CACHE", str(tmp_path))
    assert main(["info", "--json", "--device", "cpu", "--refresh", "--config", "configs/lm-tiny.toml", *TINY]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        info["matmul_gflops"]["fp8"] > 0 and info["matmul_gflops"]["fp8_rowwise"] > 0
    )  # torch._scaled_mm runs on this CPU
    assert "tf32" not in info["matmul_gflops"]  # a CUDA matmul mode: on a CPU it would be fp32 measured twice
    model = info["model_gemm"]
    assert list(model["gflops"]) == list(PEAK_KINDS) and model["config"] == "configs/lm-tiny.toml"
    assert model["gflops"]["fp32"] > 0 and model["gflops"]["fp8"] > 0 and model["micro_batch_size"] == 4
    assert model["gflops"]["tf32"] is None and "CUDA" in model["not_measured"]["tf32"]
    # 1 block: qkv, proj, fc, mlp proj, head; forward, grad-input and grad-weight of each
    assert model["distinct_shapes"] >= 5 and model["gemm_calls"] >= 3 * 5
    assert main(["info", "--set", "train.threads=1"]) == 2  # --set without --config: one line, exit 2
    assert "--set needs --config" in capsys.readouterr().err


def test_a_kind_too_slow_for_the_models_shapes_is_skipped_with_its_reason():
    cfg = load_config("configs/lm-tiny.toml", ONE_BLOCK_LM)
    got = measure_model_peaks(
        cfg, torch.device("cpu"), {"fp16": 1e-6, "fp32": None}, kinds=("fp16", "fp32"), seconds=0.05
    )
    assert got["gflops"]["fp16"] is None and "would take" in got["not_measured"]["fp16"]
    assert got["gflops"]["fp32"] > 0  # no square figure: measured


@pytest.mark.parametrize("rowwise", [False, True])
def test_the_fp8_probe_multiplies_what_it_says(rowwise):
    """The probe's torch._scaled_mm call takes its operands in the layout and with the scales the
    kernel needs, and computes (scale_a * a) @ (scale_b * b) (plain PyTorch in fp32 as reference)."""
    torch.manual_seed(0)
    a, b, sa, sb = fp8_operands(32, 64, 48, rowwise, torch.device("cpu"))
    assert a.is_contiguous() and b.t().is_contiguous()  # a row-major, b column-major
    out = torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16, use_fast_accum=True)
    ref = (a.float() * sa) @ (b.float() * sb)
    assert out.shape == (32, 48) and out.dtype == torch.bfloat16
    assert (out.float() - ref).norm() / ref.norm() < 1e-2  # bf16 output rounding
    assert (
        measure_matmul_gflops("fp8_rowwise" if rowwise else "fp8", torch.device("cpu"), n=64, seconds=0.05, repeats=3)
        > 0
    )


def test_the_fp8_model_shape_probe_keeps_batched_and_unaligned_gemms_in_bf16(monkeypatch):
    built = []
    real = env_module._gemm_call
    monkeypatch.setattr(env_module, "_gemm_call", lambda *args: built.append(args) or real(*args))
    shapes = [
        ("mm", (32, 48), (48, 64), False, False),
        ("bmm", (2, 32, 16), (2, 16, 32), False, False),
        ("mm", (30, 48), (48, 64), False, True),
    ]
    assert measure_gemm_gflops(shapes, "fp8", torch.device("cpu"), seconds=0.05) > 0
    assert [(args[0], args[5]) for args in built] == [
        ("mm", "fp8"),
        ("bmm", "fp8"),
        ("bmm", torch.bfloat16),
        ("mm", "fp8"),
        ("mm", torch.bfloat16),
    ]


def test_tf32_mode_is_set_inside_and_restored_after():
    flags = torch.backends.cuda.matmul
    attr = "fp32_precision" if hasattr(flags, "fp32_precision") else "allow_tf32"
    before = getattr(flags, attr)
    with pytest.raises(ValueError):
        with matmul_mode("tf32"):
            assert getattr(flags, attr) in ("tf32", True)
            raise ValueError("the block failed")
    assert getattr(flags, attr) == before
    with matmul_mode(torch.float32):
        assert getattr(flags, attr) == before


def test_a_dtype_with_no_fast_kernel_is_measured_at_a_quarter_of_the_size(monkeypatch):
    """fp16 on this CPU: one 1024^3 call takes ~16 s. When a (n/4)^3 call alone fills a timing
    window, the n^3 operands are never built."""
    sizes = []
    real = env_module._gemm_call
    monkeypatch.setattr(env_module, "_gemm_call", lambda op, a, b, *rest: sizes.append(a) or real(op, a, b, *rest))
    monkeypatch.setattr(env_module, "_one_call_s", lambda call, device: 1.0)  # as slow as fp16 here, without the wait
    assert measure_matmul_gflops(torch.float32, torch.device("cpu"), n=256, seconds=0.05) > 0
    assert sizes == [(64, 64)]
    monkeypatch.setattr(env_module, "_one_call_s", lambda call, device: 1e-6)
    measure_matmul_gflops(torch.float32, torch.device("cpu"), n=256, seconds=0.05)
    assert sizes[1:] == [(64, 64), (256, 256)]
