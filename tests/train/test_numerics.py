"""Numerics diagnostics: shares against a direct count, the planted bad layer, the preflight, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from trainwise.cli import main
from trainwise.config import build_config
from trainwise.numerics.analysis import analyze
from trainwise.numerics.formats import DEFAULT_FORMATS, FORMATS, quantize, shares
from trainwise.numerics.hybrid import auto_keep_high_precision
from trainwise.numerics.preflight import layer_speed
from trainwise.numerics.probe import scaled_mm_check
from trainwise.train.loop import train
from trainwise.train.precision import apply_fp8
from trainwise.workloads.base import Split, Workload, register_workload

# smallest positive subnormal of each format, from the IEEE-style bit layouts (not from torch):
# fp16 2^-24, bf16 2^-133, e4m3fn 2^-9, e5m2 2^-16; anything below half of it rounds to zero.
SMALLEST_SUBNORMAL = {"float16": 2.0**-24, "bfloat16": 2.0**-133, "float8_e4m3fn": 2.0**-9, "float8_e5m2": 2.0**-16}
MAX = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38, "float8_e4m3fn": 448.0, "float8_e5m2": 57344.0}


def _log_uniform(rows: int, cols: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mag = torch.exp(
        torch.empty(rows, cols).uniform_(
            torch.log(torch.tensor(lo)).item(), torch.log(torch.tensor(hi)).item(), generator=g
        )
    )
    sign = torch.where(torch.rand(rows, cols, generator=g) < 0.5, -1.0, 1.0)
    x = mag * sign
    x[torch.rand(rows, cols, generator=g) < 0.05] = 0.0
    return x


@pytest.mark.parametrize("name", DEFAULT_FORMATS)
def test_shares_equal_a_direct_count(name):
    fmt = FORMATS[name]
    loss_scale = 1024.0
    if fmt.scaling == "none":
        x = _log_uniform(64, 128, 1e-12, 1e7, seed=7)
        xs = x * (loss_scale if fmt.loss_scaled else 1.0)
    else:
        # every row (hence the tensor) gets an amax of 4 x the format's max: the scale is exactly 1/4
        # (dynamic scaling: nothing can overflow, but small values flush)
        x = _log_uniform(64, 128, 1e-12, 4 * MAX[fmt.dtype_name], seed=7)
        x[:, 0] = 4 * MAX[fmt.dtype_name]
        xs = x / 4
    expect_overflow = (xs.abs() > MAX[fmt.dtype_name]).double().mean().item()
    expect_underflow = ((xs != 0) & (xs.abs() <= SMALLEST_SUBNORMAL[fmt.dtype_name] / 2)).double().mean().item()
    got = shares(x, fmt, loss_scale)
    assert got["overflow"] == pytest.approx(expect_overflow, abs=1e-9)
    assert got["underflow"] == pytest.approx(expect_underflow, abs=1e-9)
    if fmt.dtype_name in ("float16", "float8_e4m3fn", "float8_e5m2"):
        assert expect_underflow > 0.01  # the constructed tensor really exercises flushing


def test_fp16_shares_on_a_hand_built_tensor():
    x = torch.tensor([1e5, -7e4, 1e-9, 1.0, 0.0, 3e-8, -2.0, 65504.0])
    got = shares(x, FORMATS["fp16"])
    assert got == {"overflow": 2 / 8, "underflow": 1 / 8}  # 3e-8 rounds up to 2^-24, 1e-9 flushes
    assert shares(x, FORMATS["fp16-scaled"], loss_scale=2.0**20)["overflow"] == 5 / 8  # all but 1e-9, 3e-8 and 0


def test_fake_quantised_gemm_equals_scaled_mm():
    check = scaled_mm_check()
    assert check["available"] and check["max_rel_diff"] < 1e-5


def test_quantize_error_orders_formats():
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(1))
    err = {
        n: ((quantize(x, FORMATS[n]) - x).norm() / x.norm()).item()
        for n in ["fp16", "bf16", "e4m3-tensorwise", "e5m2-tensorwise"]
    }
    assert err["fp16"] < err["bf16"] < err["e4m3-tensorwise"] < err["e5m2-tensorwise"] < 0.2


class Toy(nn.Module):
    def __init__(self, plant: float = 1.0):
        super().__init__()
        self.fc0, self.fc1, self.norm, self.fc2 = (
            nn.Linear(32, 64),
            nn.Linear(64, 64),
            nn.LayerNorm(64),
            nn.Linear(64, 16),
        )
        with torch.no_grad():
            self.fc1.weight.mul_(plant)  # plant: scaled weights push fc1's outputs beyond fp16

    def forward(self, x):
        return self.fc2(self.norm(self.fc1(torch.relu(self.fc0(x)))))


def _data(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 32, generator=g), torch.randint(0, 16, (n,), generator=g)


@register_workload("numerics-toy")
def toy_workload(cfg) -> Workload:
    x, y = _data()
    split = Split(x, y)
    return Workload(
        "numerics-toy",
        "classification",
        Toy(plant=1e6),
        split,
        split,
        split,
        spec={"builder": "tests.train.test_numerics:Toy", "kwargs": {"plant": 1e6}},
    )


@pytest.mark.slow  # ~20 s on a contended 2-core machine: three probes, the first pays torch warm-up
def test_planted_layer_ranks_first_and_auto_keeps_it():
    torch.manual_seed(0)
    x, y = _data()
    batches = [(x[:32], y[:32]), (x[32:], y[32:])]
    loss = nn.functional.cross_entropy
    report = analyze(Toy(plant=1e6), batches, loss, DEFAULT_FORMATS, gpu="any")
    assert report["ranking"][0] == "fc1"
    assert any("beyond fp16" in r for r in report["layers"]["fc1"]["unsafe_reasons"])
    assert report["layers"]["fc1"]["stats"]["outputs"]["shares"]["fp16"]["overflow"] > 0.5
    assert report["layers"]["fc1"]["errors"]["fp16"]["forward"] == float("inf")
    healthy = analyze(Toy(plant=1.0), batches, loss, DEFAULT_FORMATS, gpu="any")
    assert not healthy["layers"]["fc1"]["unsafe_reasons"]
    model = Toy(plant=1e6)
    keep, decision = auto_keep_high_precision(model, batches, loss, "fp8-tensorwise", gpu="any")
    assert keep == ["fc1"] and "fc1" in decision["why"]
    assert apply_fp8(model, "tensorwise", keep_patterns=keep, emulate=True) == ["fc0", "fc2"]


def test_auto_split_reaches_env_json(tmp_path):
    cfg = build_config(
        {
            "workload": {"name": "numerics-toy"},
            "train": {
                "steps": 2,
                "micro_batch_size": 16,
                "global_batch_size": 16,
                "eval_batches": 1,
                "checkpoint_every": 0,
            },
            "precision": {"policy": "fp8-tensorwise", "keep_high_precision": ["auto"], "auto_gpu": "any"},
            "log": {"progress": False},
        }
    )
    result = train(cfg, run_dir=tmp_path / "run")
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["fp8_kept_high_precision"] == ["fc1"]
    assert env["fp8_layers"] == ["fc0", "fc2"]
    assert env["fp8_auto"]["why"]["fc1"]


def test_preflight_speed_verdicts():
    assert not layer_speed(2048, 128, 512, "h100")["pays"]  # lm-tiny's GEMMs
    big = layer_speed(8192, 8192, 8192, "h100")
    assert big["pays"] and 1.2 < big["speedup"] < 2.0
    assert not layer_speed(8192, 8192, 8192, "a100")["pays"]
    torch.manual_seed(0)
    x, y = _data()
    report = analyze(Toy(), [(x, y)], nn.functional.cross_entropy, ["e4m3-tensorwise", "e5m2-tensorwise"], gpu="h100")
    assert report["preflight"]["verdict"].startswith("FP8 will not pay for this model on H100")
    assert report["preflight"]["fp8_layers"] == []


def _toml(tmp_path, workload: str) -> str:
    p = tmp_path / "c.toml"
    p.write_text(f'[workload]\nname = "{workload}"\n[train]\nmicro_batch_size = 16\nglobal_batch_size = 16\n')
    return str(p)


class NoLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(32, 16))

    def forward(self, x):
        return x @ self.w


@register_workload("numerics-nolinear")
def nolinear_workload(cfg) -> Workload:
    x, y = _data()
    split = Split(x, y)
    return Workload(
        "numerics-nolinear",
        "classification",
        NoLinear(),
        split,
        split,
        split,
        spec={"builder": "tests.train.test_numerics:NoLinear"},
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "--steps = 0: expected at least 1"),
        (["--formats", "fp16,fp4-e2m1"], "cannot cast to float4_e2m1fn_x2"),
        (["--formats", "fp12"], "format 'fp12' is not known"),
    ],
)
def test_bad_input_one_clear_error(tmp_path, capsys, args, message):
    rc = main(["numerics", _toml(tmp_path, "numerics-toy"), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_no_linear_layers_is_one_clear_error(tmp_path, capsys):
    rc = main(["numerics", _toml(tmp_path, "numerics-nolinear"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "has no nn.Linear or nn.Conv layers" in err


def test_cli_writes_json_and_html(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["numerics", _toml(tmp_path, "numerics-toy"), "--steps", "1", "--out", str(out)]) == 0
    report = json.loads((out / "numerics.json").read_text())
    assert report["ranking"][0] == "fc1" and set(report["layers"]) == {"fc0", "fc1", "fc2"}
    html = (out / "numerics.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")
    assert "FP8 preflight" in capsys.readouterr().out


def _e4m3_tensorwise_reference(t: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch fp8 round trip, torchao's tensorwise recipe: scale = 448 / amax, saturate, cast."""
    scale = 448.0 / t.abs().max().clamp(min=1e-12)
    return (t * scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).float() / scale


def test_loss_impact_equals_a_hand_quantised_forward():
    # reference: the Toy's forward written out with fc0 (or fc2) computed on hand-cast fp8 operands
    from trainwise.numerics.probe import loss_impact

    torch.manual_seed(3)
    model = Toy().eval()
    x, y = _data()
    loss_fn = nn.functional.cross_entropy

    def forward(quantised: set[str]) -> float:
        h = x
        for name in ("fc0", "fc1", "fc2"):
            layer = getattr(model, name)
            w = layer.weight.detach()
            if name in quantised:
                h = (
                    nn.functional.linear(_e4m3_tensorwise_reference(h), _e4m3_tensorwise_reference(w), layer.bias)
                    .to(torch.bfloat16)
                    .float()
                )
            else:
                h = nn.functional.linear(h, w, layer.bias)
            h = torch.relu(h) if name == "fc0" else model.norm(h) if name == "fc1" else h
        return loss_fn(h, y).item()

    layers = {"fc0": model.fc0, "fc1": model.fc1, "fc2": model.fc2}
    fmt_of = {"activations": FORMATS["e4m3-tensorwise"], "weights": FORMATS["e4m3-tensorwise"]}
    got = loss_impact(model, [(x, y)], loss_fn, layers, {"fc0", "fc2"}, fmt_of)
    with torch.no_grad():
        assert got["loss_fp32"] == pytest.approx(forward(set()), rel=1e-6)
        assert got["loss_converted"] == pytest.approx(forward({"fc0", "fc2"}), rel=1e-6)
        assert got["impact"]["fc0"] == pytest.approx(
            forward({"fc0", "fc2"}) - forward({"fc2"}), abs=1e-6
        )  # kept: what it recovers
        assert got["impact"]["fc1"] == pytest.approx(
            forward({"fc0", "fc1", "fc2"}) - forward({"fc0", "fc2"}), abs=1e-6
        )  # not converted: what it would cost
    assert got["impact"]["fc0"] != 0.0
    with torch.no_grad():
        assert loss_fn(model(x), y).item() == pytest.approx(forward(set()), rel=1e-6)


def test_ranking_orders_safe_layers_by_loss_impact():
    torch.manual_seed(0)
    x, y = _data()
    report = analyze(
        Toy(plant=1.0),
        [(x[:32], y[:32]), (x[32:], y[32:])],
        nn.functional.cross_entropy,
        ["e4m3-tensorwise", "e5m2-tensorwise"],
        gpu="any",
    )
    safe = [n for n in report["ranking"] if not report["layers"][n]["severity"]]
    impacts = [report["layers"][n]["loss_impact"] for n in safe]
    assert len(safe) >= 2 and impacts == sorted(impacts, reverse=True)
    assert report["loss_impact"]["gap"] == pytest.approx(
        report["loss_impact"]["loss_converted"] - report["loss_impact"]["loss_fp32"]
    )
