"""Health monitors: non-finite step and layer named, skip/stop, grad-norm spikes, loss-scale
trajectory, and the divergence alarm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwise.config import PrecisionConfig, build_config
from trainwise.errors import TrainwiseError
from trainwise.train.health import HealthMonitor, divergence_alarm
from trainwise.train.loop import train
from trainwise.train.precision import POLICIES
from trainwise.workloads.base import Split, Workload, register_workload

NAN_STEP = 3  # the optimizer step (1-based) whose forward goes non-finite


class PoisonAt:
    """Test-only forward hook: the k-th gradient-enabled forward of the hooked layer outputs NaN.
    Forwards without autograd (the monitor's replay, evaluation) see the same counter, so a replay
    of step k is poisoned too, as a real non-finite activation would be."""

    def __init__(self, k: int):
        self.k, self.calls = k, 0

    def __call__(self, module, inputs, output):
        if torch.is_grad_enabled():
            self.calls += 1
        return output * float("nan") if self.calls == self.k else output


def _model() -> nn.Module:
    model = nn.Sequential()
    model.add_module("embed", nn.Linear(8, 32))
    model.add_module("act", nn.ReLU())
    model.add_module("mid", nn.Linear(32, 32))
    model.add_module("out", nn.Linear(32, 4))
    model.mid.register_forward_hook(PoisonAt(NAN_STEP))
    return model


@register_workload("health-nan")
def nan_workload(cfg) -> Workload:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(64, 8, generator=g), torch.randint(0, 4, (64,), generator=g))
    return Workload(
        "health-nan",
        "classification",
        _model(),
        split,
        split,
        split,
        spec={"builder": "tests.train.test_health:_model"},
    )


def _cfg(on_nonfinite: str, steps: int = 6):
    return build_config(
        {
            "workload": {"name": "health-nan"},
            "log": {"progress": False},
            "train": {
                "steps": steps,
                "micro_batch_size": 16,
                "global_batch_size": 16,
                "eval_batches": 1,
                "checkpoint_every": 0,
                "on_nonfinite": on_nonfinite,
                "warmup_steps": 1,
            },
        }
    )


def test_nan_at_step_k_is_named_and_skipped(tmp_path):
    s = train(_cfg("skip"), run_dir=tmp_path / "run").summary
    assert s["status"] == "completed" and s["steps"] == 6
    assert s["first_nonfinite"]["step"] == NAN_STEP
    assert s["first_nonfinite"]["activation_layer"] == "mid"
    assert s["first_nonfinite"]["layer"].startswith("embed")  # the first parameter with a NaN gradient
    assert s["skipped_steps"] == 1
    assert s["final_val_loss"] == s["final_val_loss"]  # the skipped step left the weights finite: val loss is not NaN


def test_nan_at_step_k_stops_when_asked(tmp_path):
    with pytest.raises(TrainwiseError, match=rf"non-finite loss or gradient at step {NAN_STEP} .*forward output: mid"):
        train(_cfg("stop"), run_dir=tmp_path / "run")
    assert '"status": "failed"' in (tmp_path / "run" / "summary.json").read_text()


def _monitor(policy="fp32", **kw):
    model = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return HealthMonitor(POLICIES[policy], PrecisionConfig(**kw), "skip", model), model, opt


def _step(mon, step, loss, grad_norm, opt, scaler):
    """The training loop's update around the monitor (trainwise.train.loop.train)."""
    verdict = mon.check(step, loss, grad_norm, scaler)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    elif verdict.finite:
        opt.step()
    return mon.after_update(step, verdict, scaler)


def test_grad_norm_spike_is_recorded_once_with_its_step():
    mon, model, opt = _monitor(grad_spike_factor=5.0)
    norms = [1.0, 1.1, 0.9, 1.0, 1.2, 0.8, 1.0, 1.1, 0.9, 1.0, 1.0, 4.0, 20.0, 1.0]
    for step, n in enumerate(norms):
        _step(mon, step, torch.tensor(1.0), torch.tensor(n), opt, None)
    assert [s["step"] for s in mon.grad_norm_spikes] == [13]
    assert mon.grad_norm_spikes[0]["median"] == pytest.approx(1.0)
    assert sum("gradient-norm spike" in a for a in mon.alarms) == 1


def test_loss_scale_trajectory_records_each_change():
    mon, model, opt = _monitor("fp16-mixed", init_scale=1024.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    for step, bad in enumerate([True, True, False, False, False]):
        scaler.scale(model(torch.ones(2, 4)).sum()).backward()
        if bad:
            model.weight.grad.fill_(float("inf"))
        scaler.unscale_(opt)
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        _step(mon, step, torch.tensor(1.0), gn, opt, scaler)
        opt.zero_grad()
    assert [(t["step"], t["loss_scale"]) for t in mon.loss_scale_trajectory] == [(1, 512.0), (2, 256.0), (4, 512.0)]
    assert mon.skipped_steps == 2 and mon.min_loss_scale == 256.0


def test_divergence_alarm():
    control = [3.0 - 0.02 * i for i in range(50)]
    assert divergence_alarm(control, [c * 1.01 for c in control], rel_tolerance=0.05) is None
    drift = [c * (1 + 0.004 * i) for i, c in enumerate(control)]  # leaves a 5% band once the smoothed drift passes it
    msg = divergence_alarm(control, drift, rel_tolerance=0.05, smooth_steps=1)
    assert msg is not None and "at step 14 " in msg
    assert "nan" in divergence_alarm(control, control[:5] + [float("nan")], rel_tolerance=0.05)
    with pytest.raises(ValueError):
        divergence_alarm([], [1.0])
