"""Training health: non-finite steps (with the step, the parameter and the forward layer named),
loss-scale trajectory (fp16), gradient-norm spikes, and the divergence alarm against an fp32
control (`divergence_alarm`, used by the bench).

fp16 has 5 exponent bits: gradients overflow (inf) or underflow (flush to zero) unless the loss is
scaled. torch's GradScaler skips the optimizer step and halves the scale on overflow; a scale that
keeps falling ("loss-scale collapse", pytorch/pytorch#40497, NVIDIA/apex#318) means the model does
not fit fp16, and the run should say so instead of silently not learning.
"""

from __future__ import annotations

import statistics
import sys
from collections import deque
from dataclasses import dataclass

import torch

from trainwise.train.health_checks import (  # noqa: F401 (public here)
    divergence_alarm,
    first_nonfinite_activation,
    replay_forward,
)

SPIKE_WINDOW = 50  # grad norms of the last finite steps the spike test compares against
MAX_RECORDED = 100  # spikes and loss-scale changes kept in the summary


class NonFiniteError(RuntimeError):
    pass


def first_nonfinite_grad(model: torch.nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds NaN or inf (the offending layer)."""
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return name.replace("_orig_mod.", "")
    return None


@dataclass
class Verdict:
    """The health check's judgement of one step, before its update."""

    finite: bool  # loss and gradient norm are finite: the optimizer may step
    stop_reason: str | None  # set when the run must stop (train.on_nonfinite = 'stop')
    scale_before: float | None  # fp16: GradScaler's scale before the update


class HealthMonitor:
    """Observes each step (`check` before the update, `after_update` after it): counts skipped
    (non-finite) steps, tracks the loss scale and raises alarms once each. It never steps the
    optimizer: the training loop does, after consulting the verdict."""

    def __init__(self, policy, precision_cfg, on_nonfinite: str, model: torch.nn.Module, state: dict | None = None):
        self.policy = policy
        self.floor = precision_cfg.loss_scale_floor
        self.max_skipped_share = precision_cfg.max_skipped_share
        self.on_nonfinite = on_nonfinite
        self.model = model
        s = state or {}
        self.skipped_steps = s.get("skipped_steps", 0)
        self.min_loss_scale = s.get("min_loss_scale")
        self.loss_scale = s.get("loss_scale")
        self.first_nonfinite = s.get("first_nonfinite")  # {"step": k, "layer": name}
        self.alarms: list[str] = list(s.get("alarms", []))
        self.spike_factor = getattr(precision_cfg, "grad_spike_factor", 10.0)
        self.recent_grad_norms = deque(s.get("recent_grad_norms", []), maxlen=SPIKE_WINDOW)
        self.grad_norm_spikes: list[dict] = list(s.get("grad_norm_spikes", []))
        self.loss_scale_trajectory: list[dict] = list(s.get("loss_scale_trajectory", []))

    def check(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor, scaler, replay=None) -> Verdict:
        """Judge step `step` before its update: are its loss and gradient norm finite, and must the
        run stop (train.on_nonfinite = 'stop')? The caller skips or stops; the monitor only observes.

        `replay()`, if given, re-runs the step's last forward; it is called only when something is
        non-finite, to name the first layer whose forward output is non-finite (hooks on the hot
        path would cost every step)."""
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(loss))
        verdict = Verdict(finite, None, scaler.get_scale() if scaler is not None else None)
        if finite:
            self._check_spike(step + 1, float(grad_norm))
            return verdict
        # fp16: an inf gradient with a finite loss is GradScaler calibrating, not a failure
        calibrating = scaler is not None and bool(torch.isfinite(loss))
        where = first_nonfinite_grad(self.model) or "loss"
        fwd = first_nonfinite_activation(self.model, replay) if replay is not None and not calibrating else None
        if self.first_nonfinite is None:
            self.first_nonfinite = {"step": step + 1, "layer": where, "activation_layer": fwd}
        if self.on_nonfinite == "stop" and not calibrating:
            act = f", first non-finite forward output: {fwd}" if fwd else ""
            verdict.stop_reason = (
                f"non-finite loss or gradient at step {step + 1} (first non-finite gradient: {where}{act}); "
                "train.on_nonfinite = 'stop'"
            )
        return verdict

    def after_update(self, step: int, verdict: Verdict, scaler) -> bool:
        """Record what the update did (the loss scale, a skipped step) and raise alarms; returns
        whether the optimizer stepped (GradScaler skips by itself and lowers its scale)."""
        stepped = verdict.finite
        if scaler is not None:
            self.loss_scale = scaler.get_scale()
            if self.loss_scale != verdict.scale_before and len(self.loss_scale_trajectory) < MAX_RECORDED:
                self.loss_scale_trajectory.append({"step": step + 1, "loss_scale": self.loss_scale})
            self.min_loss_scale = (
                self.loss_scale if self.min_loss_scale is None else min(self.min_loss_scale, self.loss_scale)
            )
            stepped = verdict.finite and self.loss_scale >= verdict.scale_before
        if not stepped:
            self.skipped_steps += 1
        self._check_alarms(step + 1)
        return stepped

    def _check_spike(self, steps_done: int, grad_norm: float) -> None:
        """A gradient norm above `spike_factor` x the median of recent finite steps is a spike
        (the precursor of loss spikes and divergence); recorded, alarmed once."""
        if len(self.recent_grad_norms) >= 10:
            med = statistics.median(self.recent_grad_norms)
            if med > 0 and grad_norm > self.spike_factor * med:
                if len(self.grad_norm_spikes) < MAX_RECORDED:
                    self.grad_norm_spikes.append({"step": steps_done, "grad_norm": grad_norm, "median": med})
                self._alarm(
                    f"gradient-norm spike: {grad_norm:.3g} at step {steps_done} is {grad_norm / med:.0f}x the median "
                    f"of the previous {len(self.recent_grad_norms)} steps (precision.grad_spike_factor = "
                    f"{self.spike_factor:g}); see summary.json grad_norm_spikes"
                )
        self.recent_grad_norms.append(grad_norm)

    def _alarm(self, text: str) -> None:
        kind = text.split(":")[0]  # one alarm per kind: the counts in the text change every step
        if not any(a.split(":")[0] == kind for a in self.alarms):
            self.alarms.append(text)
            print(f"\ntrainwise: ALARM: {text}", file=sys.stderr)

    def _check_alarms(self, steps_done: int) -> None:
        if self.loss_scale is not None and self.loss_scale < self.floor:
            self._alarm(
                f"loss-scale collapse: the fp16 loss scale fell to {self.loss_scale:g}, below "
                f"precision.loss_scale_floor = {self.floor:g}; gradients overflow fp16 even unscaled: use bf16-mixed "
                "or fp32"
            )
        share = self.skipped_steps / max(1, steps_done)
        # GradScaler skips a few steps while it calibrates its initial scale (65536 overflows
        # on the first steps of most models): judge the share only after 20 steps and 3 skips
        if steps_done >= 20 and self.skipped_steps >= 3 and share > self.max_skipped_share:
            self._alarm(
                f"skipped steps: {self.skipped_steps} of {steps_done} steps ({share:.0%}) were skipped as non-finite, "
                f"above precision.max_skipped_share = {self.max_skipped_share:.0%}"
            )

    def log_fields(self) -> dict:
        out = {"skipped_steps": self.skipped_steps}
        if self.loss_scale is not None:
            out["loss_scale"] = self.loss_scale
        return out

    def state(self) -> dict:
        return {
            "skipped_steps": self.skipped_steps,
            "min_loss_scale": self.min_loss_scale,
            "loss_scale": self.loss_scale,
            "first_nonfinite": self.first_nonfinite,
            "alarms": self.alarms,
            "recent_grad_norms": list(self.recent_grad_norms),
            "grad_norm_spikes": self.grad_norm_spikes,
            "loss_scale_trajectory": self.loss_scale_trajectory,
        }

    def summary(self, steps_done: int) -> dict:
        return {
            "skipped_steps": self.skipped_steps,
            "skipped_share": self.skipped_steps / max(1, steps_done),
            "loss_scale": self.loss_scale,
            "min_loss_scale": self.min_loss_scale,
            "first_nonfinite": self.first_nonfinite,
            "alarms": self.alarms,
            "grad_norm_spikes": self.grad_norm_spikes,
            "loss_scale_trajectory": self.loss_scale_trajectory,
        }
