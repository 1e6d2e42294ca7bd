"""Issue 16, item 16: precision.allow_tf32 is applied, stated in env.json, and the fp32 peak that
MFU divides by is measured under the same setting (its cache key includes it)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import tiny_lm_config
from trainwise.config import load_config
from trainwise.env import _cache_path, collect_info
from trainwise.errors import ConfigError
from trainwise.train.loop import train

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 exists only on CUDA GPUs (sm_80+)")


def test_tf32_on_an_explicit_cpu_device_is_refused():
    with pytest.raises(
        ConfigError,
        match="precision.allow_tf32 = True has no effect here: it is used only when train.device is not 'cpu'",
    ):
        load_config(None, ["train.device=cpu", "precision.allow_tf32=true"])


def test_env_json_states_the_fp32_matmul_precision_that_ran(tmp_path):
    for allow, expected in (
        (False, "ieee"),
        (True, "tf32" if torch.cuda.is_available() else "ieee (precision.allow_tf32 has no effect on cpu)"),
    ):
        cfg = tiny_lm_config(
            "train.steps=2",
            "train.eval_every=0",
            "train.checkpoint_every=0",
            f"precision.allow_tf32={str(allow).lower()}",
        )
        run = train(cfg, tmp_path / str(allow)).run_dir
        assert json.loads((run / "env.json").read_text())["precision"]["fp32_matmul"] == expected


def test_the_peak_cache_is_kept_apart_per_setting():
    gpu = torch.device("cuda")
    assert _cache_path(gpu, "tf32") != _cache_path(gpu, "ieee")
    assert _cache_path(torch.device("cpu"), "ieee (precision.allow_tf32 has no effect on cpu)") == _cache_path(
        torch.device("cpu"), "ieee"
    )


def test_a_bench_grid_over_tf32_is_refused():
    from trainwise.bench.runner import plan

    with pytest.raises(ConfigError, match="precision.allow_tf32 differs between variants"):
        plan("configs/lm-tiny.toml", ["precision.allow_tf32=false,true"], [], [])


@CUDA
def test_tf32_peak_is_measured_under_tf32(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWISE_CACHE", str(tmp_path))
    gpu = torch.device("cuda")
    ieee = collect_info(gpu, refresh=True, allow_tf32=False)
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    tf32 = collect_info(gpu, refresh=True, allow_tf32=True)
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert (ieee["fp32_matmul"], tf32["fp32_matmul"]) == ("ieee", "tf32")
    assert len(list(tmp_path.glob("info-*.json"))) == 2
    # TF32 runs on tensor cores: several times IEEE fp32's rate on any sm_80+ GPU
    assert tf32["matmul_gflops"]["fp32"] > 2 * ieee["matmul_gflops"]["fp32"], (
        ieee["matmul_gflops"],
        tf32["matmul_gflops"],
    )
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
