"""MFU within physical bounds: model FLOPs with attention against PaLM's formula, the MLP against
6 x parameters x samples, the cap at 100% with the model-shape peak and "peak unrepresentative",
the GEMM shape recorder, and where a row's speed comes from."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from trainwise.bench.grid import expand
from trainwise.bench.results import PEAK_UNREPRESENTATIVE, aggregate, mfu
from trainwise.bench.worker import flops_per_step
from trainwise.config import build_config, load_config
from trainwise.env import gemm_flops, measure_gemm_gflops, record_gemm_shapes
from trainwise.workloads.build import build_workload

LM = [
    "workload.name=lm",
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.context=16",
    "data.max_corpus_bytes=100000",
    "train.micro_batch_size=4",
    "train.global_batch_size=8",
]


def linear_weights(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


def test_lm_flops_count_attention_as_palm_does():
    cfg = build_config({}, LM, "test")
    wl = build_workload(cfg)
    m = cfg.model
    tokens = cfg.train.global_batch_size * m.context
    n_matmul = sum(lin.weight.numel() for lin in linear_weights(wl.model))
    # PaLM (Chowdhery et al. 2022, app. B): 6N + 12 * n_layers * d_model * context per token
    assert flops_per_step(wl, cfg.train) == 6 * n_matmul * tokens + 12 * m.n_layers * m.d_model * m.context * tokens
    # what torch's counter alone gives on a CPU: the attention term is missing (the symptom)
    x, y = wl.train.batch(torch.arange(cfg.train.micro_batch_size))
    with FlopCounterMode(display=False) as plain:
        wl.loss_fn(wl.model(x), y).backward()
    assert plain.get_total_flops() * 2 == 6 * n_matmul * tokens


def test_mlp_flops_are_six_per_parameter_and_sample():
    cfg = load_config("configs/tabular.toml")
    wl = build_workload(cfg)
    samples = cfg.train.global_batch_size
    layers = linear_weights(wl.model)
    params = sum(p.numel() for p in wl.model.parameters())
    weights = sum(lin.weight.numel() for lin in layers)
    # 6 x weights x samples, less the first layer's input gradient (the table needs none: 2 x its weights);
    # biases and LayerNorm gains are parameters without a matmul
    expected = (6 * weights - 2 * layers[0].weight.numel()) * samples
    assert flops_per_step(wl, cfg.train) == expected
    assert 0.8 < expected / (6 * params * samples) <= 1.0


INFO = {"matmul_gflops": {"fp32": 100.0, "bf16": 400.0, "fp16": 1.3}}


def test_mfu_from_the_square_probe_when_it_bounds_the_model():
    value, basis = mfu(50e9, 1000.0, "bf16-mixed", INFO)  # 50 GFLOP/s vs 400
    assert value == pytest.approx(0.125) and "square-matrix probe" in basis


def test_mfu_above_100_percent_falls_back_to_the_models_own_gemm_peak():
    # fp16's square probe: 1.3 GFLOP/s; the model ran 5.2 GFLOP/s (the report's 395%)
    value, basis = mfu(5.2e9, 1000.0, "fp16-mixed", INFO, gemm_gflops=8.0)
    assert value == pytest.approx(0.65) and "model's own matmul shapes" in basis and "400%" in basis


def test_mfu_is_never_above_100_percent():
    value, basis = mfu(5.2e9, 1000.0, "fp16-mixed", INFO, gemm_gflops=4.0)
    assert value is None and basis.startswith(PEAK_UNREPRESENTATIVE)
    value, basis = mfu(5.2e9, 1000.0, "fp16-mixed", INFO)
    assert value is None and "were not measured" in basis
    for flops in (1e9, 1e11, 1e13):
        for policy in ("fp32", "bf16-mixed", "fp16-mixed", "fp8-tensorwise"):
            value, _ = mfu(flops, 100.0, policy, INFO, gemm_gflops=50.0)
            assert value is None or 0 < value <= 1


def test_fp8_is_divided_by_the_bf16_peak_and_says_so():
    value, basis = mfu(40e9, 1000.0, "fp8-tensorwise", INFO)
    assert value == pytest.approx(0.1) and "bf16-equivalent" in basis


def test_gemm_shapes_of_a_linear_forward_and_backward():
    lin = torch.nn.Linear(8, 16)
    x = torch.randn(4, 5, 8, requires_grad=True)
    shapes = record_gemm_shapes(lambda: lin(x).pow(2).sum().backward())
    # forward addmm (20x8 @ 8x16, the weight transposed); backward: input grad and weight grad
    assert shapes == [
        ("addmm", (20, 8), (8, 16), False, True),
        ("mm", (20, 16), (16, 8), False, False),
        ("mm", (16, 20), (20, 8), True, False),
    ]
    assert sum(gemm_flops(*s[:3]) for s in shapes) == 3 * 2 * 20 * 8 * 16
    assert gemm_flops("bmm", (3, 4, 5), (3, 5, 6)) == 2 * 3 * 4 * 5 * 6
    assert measure_gemm_gflops(shapes, torch.bfloat16, torch.device("cpu"), seconds=0.05) > 0
    assert measure_gemm_gflops([], torch.float32, torch.device("cpu")) is None


TRAINED = {
    "status": "completed",
    "median_step_ms": 10.0,
    "min_step_ms": 8.0,
    "max_step_ms": 30.0,
    "tokens_per_s": 409600.0,
    "flops_per_step": 1e9,
    "steps": 8,
    "timed_steps": 7,
    "final_val_loss": 1.0,
}


def test_row_speed_comes_from_the_timing_phase_and_falls_back_to_training():
    control, full = expand(["memory.ac=none,full"], [])
    timed = {
        "median_step_ms": 20.0,
        "min_step_ms": 19.0,
        "max_step_ms": 22.0,
        "timed_steps": 12,
        "units_per_step": 4096,
        "step_ms": [[20.0, 20.0]] * 6,
        "round_median_ms": [20.0] * 6,
        "gemm_gflops": 50.0,
        "speed_ratio_vs_control": {"median": 1.3, "ci95": [1.2, 1.4], "n_rounds": 6, "reliable": True, "note": "x"},
    }
    row = aggregate(full, TRAINED, INFO, 0.0, timed)
    assert row["median_step_ms"] == 20.0 and row["tokens_per_s"] == pytest.approx(4096 / 0.02)
    assert (
        row["timing_source"] == "timing phase: 12 steps in 6 interleaved rounds"
        and row["speed_ratio_vs_control"]["median"] == 1.3
    )
    assert row["mfu"] == pytest.approx(1e9 / 0.02 / 100e9)
    untimed = aggregate(full, TRAINED, INFO, 0.0, {"reason": "the timing process killed by signal 9"})
    assert untimed["median_step_ms"] == 10.0 and untimed["tokens_per_s"] == pytest.approx(409600.0)
    assert untimed["timing_source"].startswith("training run (the timing process killed by signal 9)")
    assert aggregate(control, TRAINED, INFO, 0.0)["timing_source"].startswith(
        "training run (the timing phase did not run)"
    )
