"""Tensor inputs as JSON: nested lists checked against the declared shape, dtype and value range.

One example of shape [4, 3] is `[[a, b, c], [d, e, f], [g, h, i], [j, k, l]]`. The check walks the
nesting level by level, so a wrong size is named by its dimension, counted as in the model's batch
(dimension 0 is the batch, dimension 1 the first axis of one example), and by where it occurs:

    dimension 2 has 5 entries at x[1], expected 3 (shape [4, 3]; dimension 0 is the batch)

Element types follow the dtype: JSON numbers for float dtypes (finite and within the dtype's
range: 1e39 would be infinity in float32), integers for integer dtypes (within the dtype's range),
true/false for bool. A declared `value_range` is enforced, not only documented: a pixel of 7.0 for a
[0, 1] model is almost always a client sending 0-255 values, and a 422 that says so is better than a
confident answer on inputs the model never saw.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic_core import PydanticCustomError

from trainwise.workloads.inputs import TENSOR_DTYPES


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{message}", {"message": message})


def element_kind(dtype: str) -> str:
    d = TENSOR_DTYPES[dtype]
    return "bool" if d == torch.bool else "number" if d.is_floating_point else "integer"


# JSON types each kind accepts (bool is not an int here, although Python says it is)
ACCEPTED = {"number": {int, float}, "integer": {int}, "bool": {bool}}


def check_tensor(value, spec: dict):
    """Return `value` (nested lists) if it is one example of `spec`, else raise a PydanticCustomError."""
    shape, kind = spec["shape"], element_kind(spec["dtype"])
    leaves = _check_nesting(value, shape)
    accepted = ACCEPTED[kind]
    for path, leaf in leaves:
        if not set(map(type, leaf)) <= accepted:  # set/map run in C: cheap even for large images
            k = next(k for k, v in enumerate(leaf) if type(v) not in accepted)
            raise _error(
                f"tensor_{kind}",
                f"x{_index(path + [k])} = {leaf[k]!r}: expected "
                f"{'a JSON ' + kind if kind != 'bool' else 'true or false'} (dtype {spec['dtype']})",
            )
    if kind != "bool":
        _check_values(value, spec, kind)
    return value


def _check_nesting(value, shape: list[int]) -> list[tuple[list[int], list]]:
    """Every innermost list with its index path, after checking each level's length."""
    level: list[tuple[list[int], object]] = [([], value)]
    for dim, size in enumerate(shape):
        for path, node in level:
            if not isinstance(node, list):
                got = "null" if node is None else f"a {type(node).__name__}"
                raise _error(
                    "tensor_shape",
                    f"x{_index(path)} is {got}, expected a list of {size} entries "
                    f"(dimension {dim + 1}; shape {shape}; dimension 0 is the batch)",
                )
            if len(node) != size:
                where = f" at x{_index(path)}" if path else ""
                raise _error(
                    "tensor_shape",
                    f"dimension {dim + 1} has {len(node)} entries{where}, expected {size} "
                    f"(shape {shape}; dimension 0 is the batch)",
                )
        if dim + 1 < len(shape):
            level = [(path + [i], child) for path, node in level for i, child in enumerate(node)]
    return level


def _check_values(value, spec: dict, kind: str) -> None:
    try:
        arr = np.asarray(value, dtype=np.float64 if kind == "number" else np.int64)
    except OverflowError:
        raise _error("tensor_integer", f"x holds an integer beyond int64 (dtype {spec['dtype']})") from None
    low, high = _allowed_range(spec, kind)
    bad = ~np.isfinite(arr) if kind == "number" else np.zeros(arr.shape, bool)
    bad |= (arr < low) | (arr > high)
    if bad.any():
        at = [int(i) for i in np.argwhere(bad)[0]]
        v = arr[tuple(at)]
        why = (
            "expected a finite number"
            if kind == "number" and not math.isfinite(v)
            else f"outside {_range_name(spec, kind)} [{low:g}, {high:g}]"
        )
        raise _error("tensor_value", f"x{_index(at)} = {v.item()!r}: {why}")


def _allowed_range(spec: dict, kind: str) -> tuple[float | None, float | None]:
    """The declared value_range, narrowed to what the dtype can hold (1e39 is infinity in float32)."""
    low, high = spec.get("value_range") or (None, None)
    info = torch.iinfo(TENSOR_DTYPES[spec["dtype"]]) if kind == "integer" else torch.finfo(TENSOR_DTYPES[spec["dtype"]])
    low = info.min if low is None else max(low, info.min)
    high = info.max if high is None else min(high, info.max)
    return low, high


def _range_name(spec: dict, kind: str) -> str:
    return "value_range" if spec.get("value_range") else f"the range of {spec['dtype']}"


def _index(path: list[int]) -> str:
    return "".join(f"[{i}]" for i in path)


def tensor_json_schema(spec: dict) -> dict:
    """The nested-array JSON schema of one example (OpenAPI): sizes per level, element type, range."""
    kind = element_kind(spec["dtype"])
    item: dict = {"type": {"number": "number", "integer": "integer", "bool": "boolean"}[kind]}
    if spec.get("value_range"):
        item["minimum"], item["maximum"] = spec["value_range"]
    for size in reversed(spec["shape"]):
        item = {"type": "array", "items": item, "minItems": size, "maxItems": size}
    rng = (
        f", values in [{spec['value_range'][0]:g}, {spec['value_range'][1]:g}] (enforced)"
        if spec.get("value_range")
        else ""
    )
    item["description"] = f"one example: nested lists of shape {spec['shape']}, dtype {spec['dtype']}{rng}"
    return item


def tensor_batch(examples: list, spec: dict) -> torch.Tensor:
    """Checked examples (nested lists) -> the model's (B, *shape) input in the declared dtype."""
    kind = element_kind(spec["dtype"])
    arr = np.asarray(examples, dtype={"number": np.float64, "integer": np.int64, "bool": np.bool_}[kind])
    return torch.from_numpy(arr).to(TENSOR_DTYPES[spec["dtype"]])
