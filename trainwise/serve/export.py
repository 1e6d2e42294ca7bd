"""`trainwise export REF --onnx OUT.onnx`: an ONNX file for edge runtimes, checked in onnxruntime.

The graph takes the model's tensor input as its input spec declares it (for tables the
preprocessed feature vector; the fitted preprocessing travels in the file's metadata as
`trainwise_model_json`) and returns logits, with a dynamic batch axis. After export the file is run in
onnxruntime on random inputs and compared with PyTorch's outputs; a mismatch beyond `atol` is an error,
not a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from trainwise.errors import TrainwiseError
from trainwise.rundir import load_model
from trainwise.serve.runtime import resolve_ref
from trainwise.workloads.inputs import TENSOR_DTYPES, require_input_spec


class ExportError(TrainwiseError):
    """The model could not be exported or its ONNX outputs differ from PyTorch's."""


def example_input(spec: dict, batch: int, seed: int = 0) -> torch.Tensor:
    """A random batch the model accepts, built from its input spec (model.json `input`).

    table: the preprocessed feature vector (standardised numbers, the missing indicators of imputed
    columns, then one one-hot block per categorical column); tensor: the declared shape and dtype, within
    value_range when declared; tokens: ids below vocab_size, `context` of them (the exported graph's fixed
    sequence length).
    """
    g = torch.Generator().manual_seed(seed)
    if spec["kind"] == "table":
        prep = spec["preprocessing"]
        parts = [torch.randn((batch, len(prep["numeric"])), generator=g)]
        n_indicators = sum(1 for c in prep["numeric"] if c.get("indicator"))  # imputed columns' missing flags
        parts.append(torch.randint(0, 2, (batch, n_indicators), generator=g).float())
        for col in prep["categorical"]:
            n = len(col["categories"])
            parts.append(torch.nn.functional.one_hot(torch.randint(0, n, (batch,), generator=g), n).float())
        return torch.cat(parts, dim=1)
    if spec["kind"] == "tokens":
        return torch.randint(0, spec["vocab_size"], (batch, spec["context"]), generator=g)
    return _example_tensor(spec, batch, g)


def _example_tensor(spec: dict, batch: int, g: torch.Generator) -> torch.Tensor:
    dtype, shape = TENSOR_DTYPES[spec["dtype"]], (batch, *spec["shape"])
    if dtype == torch.bfloat16:  # numpy has no bfloat16, so onnxruntime cannot be fed one from Python
        raise ExportError(
            "input dtype bfloat16: onnxruntime's Python API cannot take bfloat16 arrays; "
            "declare float32 and cast inside the model"
        )
    low, high = spec.get("value_range") or (None, None)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if not dtype.is_floating_point:  # integers: the declared range, else 0/1 (an unknown range may index a table)
        low, high = (0, 1) if low is None else (int(math.ceil(low)), int(math.floor(high)))
        return torch.randint(low, high + 1, shape, generator=g).to(dtype)
    x = torch.randn(shape, generator=g) if low is None else low + (high - low) * torch.rand(shape, generator=g)
    return x.to(dtype)


def export_onnx(ref: str, out: str | Path, tracking_uri: str | None = None, atol: float = 1e-4) -> dict:
    """Export `ref`'s model to `out`; returns {path, max_abs_diff, n_checked, opset}."""
    try:
        # lazy: onnx and onnxruntime take seconds to import; only export uses them
        import onnx
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs onnx and onnxruntime ({e}); install them with `pip install onnx onnxruntime onnxscript`"
        ) from e
    model_dir, meta = resolve_ref(ref, tracking_uri)
    spec = require_input_spec(meta, "trainwise export", str(model_dir / "model.json"))  # before loading weights
    model, _ = load_model(model_dir, verify=True, registered=meta.get("registry"))
    model.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(spec, 2)
    dynamic = {"input": {0: torch.export.Dim("batch", min=1, max=4096)}}
    try:
        with _quiet_exporter():
            torch.onnx.export(
                model,
                (x,),
                str(out),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: dynamic["input"][0]},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001 - the exporter's errors are long; keep the first line
        raise ExportError(f"torch.onnx.export failed for {ref}: {str(e).splitlines()[0]}") from e
    proto = onnx.load(str(out))
    stored = {k: v for k, v in meta.items() if k != "registry"}
    onnx.helper.set_model_props(proto, {"trainwise_model_json": json.dumps(stored)})
    onnx.save(proto, str(out))

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x_check = example_input(spec, 16, seed=1)
    with torch.inference_mode():
        expected = model(x_check).float().numpy()
    got = session.run(None, {session.get_inputs()[0].name: x_check.numpy()})[0]
    diff = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or not diff <= atol:
        out.unlink(missing_ok=True)
        raise ExportError(
            f"onnxruntime outputs differ from PyTorch's by {diff:.3g} (> atol {atol}) or in shape "
            f"{got.shape} vs {expected.shape}; the exported file was removed"
        )
    return {"path": str(out), "max_abs_diff": diff, "n_checked": len(x_check), "opset": proto.opset_import[0].version}


@contextlib.contextmanager
def _quiet_exporter():
    """Hide the exporter's deprecation warnings and registry log lines (torchvision ops, RNN weight
    attributes): they say nothing about this model, and the onnxruntime comparison is the real check."""
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        registry_log.setLevel(level)
