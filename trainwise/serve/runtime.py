"""A loaded model ready to serve: weights in the served precision, input conversion, predictions.

`load_runtime(ref, precision)` resolves a registry reference or run directory, rebuilds the model
(its weights hash verified), and applies the precision: fp32 as trained, bf16 weights and
activations, or int8 weight-only through torchao's `quantize_(model, Int8WeightOnlyConfig())`
(torchao, not the deprecated torch.ao.quantization). Probabilities are always a float32 softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from trainwise.errors import ConfigError, DataError
from trainwise.registry import resolve_model_ref
from trainwise.rundir import load_model
from trainwise.serve.finite import OVERFLOW_INSIDE, InstanceError, finite_output, nonfinite_inputs, output_error
from trainwise.serve.tensors import tensor_batch
from trainwise.workloads.inputs import input_spec_of, require_input_spec
from trainwise.workloads.tabular import apply_preprocessing

PRECISIONS = ("fp32", "bf16", "int8")


def apply_precision(model: nn.Module, precision: str) -> nn.Module:
    """Return `model` converted for inference in `precision` (fp32 unchanged)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"serve.precision = {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16":
        return CastInput(model.to(torch.bfloat16), torch.bfloat16)
    if precision == "int8":
        # lazy: torchao takes seconds to import; only serve.precision = int8 uses it
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())  # nn.Linear weights -> int8 with per-channel scales
    return model


class CastInput(nn.Module):
    """Casts floating inputs to the weights' dtype, so callers keep sending fp32 (token ids pass as is)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype) if x.is_floating_point() else x)


@dataclass
class Runtime:
    """One served model version. Immutable once built, so swapping the reference is atomic.

    `input` is the model's input spec (model.json `input`, or read from an older model.json's
    fields); requests are converted to the model's batch from it.
    """

    model: nn.Module
    meta: dict
    version: str
    precision: str = "fp32"
    model_dir: Path | None = None
    input: dict | None = None

    def __post_init__(self):
        if self.input is None:
            self.input = input_spec_of(self.meta)

    @property
    def task(self) -> str:
        return self.meta.get("task", "classification")

    def to_tensor(self, instances: list[dict]) -> torch.Tensor:
        """Validated instances (dicts, as the request schema made them) -> the model's input batch."""
        spec = self.input or require_input_spec(self.meta, "serving")
        if spec["kind"] == "table":
            with np.errstate(
                over="ignore", invalid="ignore"
            ):  # a value that overflows is answered 422 (serve/finite.py), not warned about
                return torch.from_numpy(apply_preprocessing(spec["preprocessing"], pd.DataFrame(instances)))
        if spec["kind"] == "tensor":
            return tensor_batch([inst["x"] for inst in instances], spec)  # (B, *shape)
        return torch.tensor([token_ids(inst) for inst in instances])  # (B, T): the caller groups equal lengths

    @torch.inference_mode()
    def predict(self, instances: list[dict]) -> list[dict | InstanceError]:
        """Predictions for validated instances, one dict per instance (label, probabilities), or an
        InstanceError for an instance whose input or output is not finite in the model's dtype."""
        if self.task == "lm":
            return [self._predict_next(inst) for inst in instances]
        if self.input is not None and self.input["kind"] == "tokens":
            return self._predict_by_length(instances)
        x = self.to_tensor(instances)
        out: list = [None] * len(instances)
        refused = nonfinite_inputs(x, torch.bfloat16 if self.precision == "bf16" else None, instances, self.input)
        keep = [i for i in range(len(instances)) if i not in refused]
        answers = self._classify(x if len(keep) == len(x) else x[keep]) if keep else []
        for i, answer in zip(keep, answers, strict=True):
            out[i] = answer or output_error(x[i], instances[i], self.input)
        for i, error in refused.items():
            out[i] = error
        return out

    def _classify(self, x: torch.Tensor) -> list[dict | None]:
        """Label and probabilities per row of `x`; None for a row whose probabilities are not finite."""
        prob = F.softmax(self.model(x).float(), dim=-1).numpy()
        classes = self.meta.get("info", {}).get("classes") or [str(i) for i in range(prob.shape[1])]
        return [
            {"label": classes[int(np.argmax(p))], "probabilities": dict(zip(classes, p.tolist(), strict=True))}
            if finite_output(p)
            else None
            for p in prob
        ]

    def _predict_by_length(self, instances: list[dict]) -> list[dict | InstanceError]:
        # token sequences of different lengths cannot share a tensor (no pad id is declared): one
        # model call per length, answers put back in request order
        by_length: dict[int, list[int]] = {}
        for i, inst in enumerate(instances):
            by_length.setdefault(len(token_ids(inst)), []).append(i)
        out: list[dict] = [{}] * len(instances)
        for index in by_length.values():
            for i, pred in zip(index, self._classify(self.to_tensor([instances[i] for i in index])), strict=True):
                out[i] = pred or InstanceError("prompt" if "prompt" in instances[i] else "ids", OVERFLOW_INSIDE)
        return out

    def _predict_next(self, inst: dict) -> dict | InstanceError:
        """A language model's next-token probabilities and, when asked, a greedy continuation."""
        context = int(self.input["context"]) if self.input else int(self.meta["spec"]["kwargs"]["context"])
        ids = token_ids(inst)
        first = self.model(torch.tensor([ids[-context:]]))[0, -1].float()  # (vocab,) logits of the next token
        result = {"label": None, "probabilities": F.softmax(first, dim=-1).tolist()}
        if not finite_output(result["probabilities"]):
            return InstanceError("prompt" if "prompt" in inst else "ids", OVERFLOW_INSIDE)
        n_new = inst.get("max_new_bytes", inst.get("max_new_tokens", 0))
        if n_new:
            logits, out = first, []
            for _ in range(n_new):
                out.append(int(logits.argmax()))
                ids.append(out[-1])
                logits = self.model(torch.tensor([ids[-context:]]))[0, -1].float()
            if "prompt" in inst:
                result["continuation"] = bytes(out).decode("utf-8", errors="replace")
            else:
                result["continuation_ids"] = out
        return result


def token_ids(inst: dict) -> list[int]:
    """A tokens instance's ids: the UTF-8 bytes of a text prompt, or the ids sent."""
    return list(inst["prompt"].encode("utf-8")) if "prompt" in inst else list(inst["ids"])


def version_of(meta: dict, model_dir: Path) -> str:
    """ "NAME/VERSION" for a registered version, else the run directory's name plus a hash prefix."""
    reg = meta.get("registry")
    if reg:
        return f"{reg['name']}/{reg['version']}"
    run = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    return f"{run}@{str(meta.get('weights_sha256', ''))[:12]}"


def resolve_ref(ref: str, tracking_uri: str | None = None) -> tuple[Path, dict]:
    """registry.resolve_model_ref, with a missing path reported as such rather than as a bad model name."""
    text = str(ref)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1:
        if not Path(text).expanduser().exists():
            raise DataError(
                f"model reference {text!r}: no such run directory (expected a run directory, NAME@ALIAS or "
                "NAME/VERSION)"
            )
        text = str(Path(text).expanduser())
    return resolve_model_ref(text, tracking_uri)


def load_runtime(ref: str, precision: str = "fp32", tracking_uri: str | None = None) -> Runtime:
    """Resolve `ref` ("NAME@ALIAS", "NAME/VERSION" or a run directory) into a served model."""
    model_dir, meta = resolve_ref(ref, tracking_uri)
    spec = require_input_spec(meta, "trainwise serve", str(model_dir / "model.json"))  # before loading weights
    model, _ = load_model(model_dir, verify=True, registered=meta.get("registry"))
    model = apply_precision(model.eval(), precision)
    return Runtime(
        model=model,
        meta=meta,
        version=version_of(meta, model_dir),
        precision=precision,
        model_dir=model_dir,
        input=spec,
    )
