"""`trainwise export REF --onnx OUT.onnx`: an ONNX file for edge runtimes, checked in onnxruntime.

The graph takes the model's tensor input (for tabular models the preprocessed feature vector; the
fitted preprocessing travels in the file's metadata as `trainwise_model_json`) and returns logits,
with a dynamic batch axis. After export the file is run in onnxruntime on random inputs and
compared with PyTorch's outputs; a mismatch beyond `atol` is an error, not a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from trainwise.errors import TrainwiseError


class ExportError(TrainwiseError):
    """The model could not be exported or its ONNX outputs differ from PyTorch's."""


def example_input(meta: dict, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kwargs = meta["spec"]["kwargs"]
    if meta.get("task") == "lm":
        return torch.randint(0, 256, (batch, int(kwargs["context"])), generator=g)
    if "input_shape" in meta.get("info", {}):
        return torch.rand((batch, *meta["info"]["input_shape"]), generator=g)
    return torch.randn((batch, int(kwargs["n_features"])), generator=g)


def export_onnx(ref: str, out: str | Path, tracking_uri: str | None = None, atol: float = 1e-4) -> dict:
    """Export `ref`'s model to `out`; returns {path, max_abs_diff, n_checked, opset}."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({e}); install them with `pip install onnx onnxruntime onnxscript`") from e
    from trainwise.serve.runtime import resolve_ref
    from trainwise.rundir import load_model

    model_dir, meta = resolve_ref(ref, tracking_uri)
    model, _ = load_model(model_dir, verify=True)
    model.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    x = example_input(meta, 2)
    dynamic = {"input": {0: torch.export.Dim("batch", min=1, max=4096)}}
    try:
        torch.onnx.export(model, (x,), str(out), input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: dynamic["input"][0]},), dynamo=True, external_data=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter's errors are long; keep the first line
        raise ExportError(f"torch.onnx.export failed for {ref}: {str(e).splitlines()[0]}") from e
    proto = onnx.load(str(out))
    stored = {k: v for k, v in meta.items() if k != "registry"}
    onnx.helper.set_model_props(proto, {"trainwise_model_json": json.dumps(stored)})
    onnx.save(proto, str(out))

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x_check = example_input(meta, 16, seed=1)
    with torch.inference_mode():
        expected = model(x_check).float().numpy()
    got = session.run(None, {session.get_inputs()[0].name: x_check.numpy()})[0]
    diff = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or not diff <= atol:
        out.unlink(missing_ok=True)
        raise ExportError(f"onnxruntime outputs differ from PyTorch's by {diff:.3g} (> atol {atol}) or in shape "
                          f"{got.shape} vs {expected.shape}; the exported file was removed")
    return {"path": str(out), "max_abs_diff": diff, "n_checked": len(x_check), "opset": proto.opset_import[0].version}
