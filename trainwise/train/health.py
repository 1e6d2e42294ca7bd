"""Training health: non-finite steps, loss-scale trajectory (fp16), and their alarms.

fp16 has 5 exponent bits: gradients overflow (inf) or underflow (flush to zero) unless the loss is
scaled. torch's GradScaler skips the optimizer step and halves the scale on overflow; a scale that
keeps falling ("loss-scale collapse", pytorch/pytorch#40497, NVIDIA/apex#318) means the model does
not fit fp16, and the run should say so instead of silently not learning.
"""

from __future__ import annotations

import sys

import torch


class NonFiniteError(RuntimeError):
    pass


def first_nonfinite_grad(model: torch.nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds NaN or inf (the offending layer)."""
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return name.replace("_orig_mod.", "")
    return None


class HealthMonitor:
    """Counts skipped (non-finite) steps, tracks the loss scale and raises alarms once each."""

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

    def step(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor, optimizer, scaler) -> bool:
        """Take the optimizer step unless it is non-finite; returns whether it was taken."""
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(loss))
        if not finite:
            where = first_nonfinite_grad(self.model) or "loss"
            if self.first_nonfinite is None:
                self.first_nonfinite = {"step": step + 1, "layer": where}
            if self.on_nonfinite == "stop" and not (scaler is not None and bool(torch.isfinite(loss))):
                raise NonFiniteError(f"non-finite loss or gradient at step {step + 1} (first non-finite gradient: {where}); train.on_nonfinite = 'stop'")
        if scaler is not None:
            before = scaler.get_scale()
            scaler.step(optimizer)  # skips the update itself when gradients are not finite
            scaler.update()
            self.loss_scale = scaler.get_scale()
            self.min_loss_scale = self.loss_scale if self.min_loss_scale is None else min(self.min_loss_scale, self.loss_scale)
            stepped = finite and self.loss_scale >= before
        else:
            if finite:
                optimizer.step()
            stepped = finite
        if not stepped:
            self.skipped_steps += 1
        self._check_alarms(step + 1)
        return stepped

    def _alarm(self, text: str) -> None:
        kind = text.split(":")[0]  # one alarm per kind: the counts in the text change every step
        if not any(a.split(":")[0] == kind for a in self.alarms):
            self.alarms.append(text)
            print(f"\ntrainwise: ALARM: {text}", file=sys.stderr)

    def _check_alarms(self, steps_done: int) -> None:
        if self.loss_scale is not None and self.loss_scale < self.floor:
            self._alarm(f"loss-scale collapse: the fp16 loss scale fell to {self.loss_scale:g}, below precision.loss_scale_floor = {self.floor:g}; gradients overflow fp16 even unscaled: use bf16-mixed or fp32")
        share = self.skipped_steps / max(1, steps_done)
        # GradScaler skips a few steps while it calibrates its initial scale (65536 overflows
        # on the first steps of most models): judge the share only after 20 steps and 3 skips
        if steps_done >= 20 and self.skipped_steps >= 3 and share > self.max_skipped_share:
            self._alarm(f"skipped steps: {self.skipped_steps} of {steps_done} steps ({share:.0%}) were skipped as non-finite, above precision.max_skipped_share = {self.max_skipped_share:.0%}")

    def log_fields(self) -> dict:
        out = {"skipped_steps": self.skipped_steps}
        if self.loss_scale is not None:
            out["loss_scale"] = self.loss_scale
        return out

    def state(self) -> dict:
        return {"skipped_steps": self.skipped_steps, "min_loss_scale": self.min_loss_scale, "loss_scale": self.loss_scale,
                "first_nonfinite": self.first_nonfinite, "alarms": self.alarms}

    def summary(self, steps_done: int) -> dict:
        return {"skipped_steps": self.skipped_steps, "skipped_share": self.skipped_steps / max(1, steps_done),
                "loss_scale": self.loss_scale, "min_loss_scale": self.min_loss_scale,
                "first_nonfinite": self.first_nonfinite, "alarms": self.alarms}
