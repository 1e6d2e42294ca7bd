"""Values a model cannot take or give back: a 422 for the instance, never a 500 for the batch.

A request that passes the schema can still hold a number the model's dtype cannot: 1e308 in a
table column becomes (1e308 - mean) / scale, past float32's 3.4e38; a float32 tensor value of
3.39e38 served in bf16 rounds to infinity. A model can also overflow inside on finite inputs.
Either way its probabilities come out NaN, which JSON cannot carry: that was a 500 with a traceback,
and a reset connection. So the runtime checks each instance's input in the dtype the model computes
in, and each instance's output; an instance that fails becomes an `InstanceError` naming its field,
which the app answers 422. The model never sees that instance, and the other instances and the
other requests of its batch are answered as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class InstanceError:
    """Why one instance gets no prediction. field: a column name, or x ('' = the whole instance)."""

    field: str
    message: str


def nonfinite_inputs(
    x: torch.Tensor, compute_dtype: torch.dtype | None, instances: list[dict], spec: dict
) -> dict[int, InstanceError]:
    """{row: error} for the rows of the model's input batch `x` that hold a value that is not finite
    once in `compute_dtype` (None: x's own dtype)."""
    if not x.is_floating_point():
        return {}
    seen = (
        x if compute_dtype is None else x.to(compute_dtype)
    )  # what the model will read (CastInput casts the same way)
    bad = ~torch.isfinite(seen.reshape(len(seen), -1))  # (B, features)
    dtype = str(seen.dtype).removeprefix("torch.")
    out = {}
    for row in bad.any(dim=1).nonzero().flatten().tolist():
        at = int(bad[row].nonzero()[0])
        if spec["kind"] == "table":
            out[row] = _table_error(spec["preprocessing"], at, instances[row], dtype)
        else:
            index = np.unravel_index(at, tuple(x.shape[1:]))
            where = "x" + "".join(f"[{int(i)}]" for i in index)  # the field is x, as in the schema's tensor errors
            out[row] = InstanceError(
                "x",
                f"{where} = {_sent(instances[row], index)!r} overflows the model's {dtype} input; "
                f"expected a magnitude below {torch.finfo(seen.dtype).max:.4g}",
            )
    return out


def _sent(instance: dict, index) -> object:
    """The value the client sent at `index` of its tensor (before any cast)."""
    value = instance["x"]
    for i in index:
        value = value[int(i)]
    return value


def _table_error(prep: dict, feature: int, instance: dict, dtype: str) -> InstanceError:
    """The column behind feature `feature` of the preprocessed row (numeric columns come first)."""
    if feature >= len(prep["numeric"]):  # one-hot features are 0 or 1: only a numeric one can overflow
        return InstanceError("", f"the instance's features are not finite in {dtype}")
    col = prep["numeric"][feature]
    limit = abs(col["scale"]) * float(torch.finfo(getattr(torch, dtype)).max)
    return InstanceError(
        col["name"],
        f"{instance.get(col['name'])!r} overflows the model's {dtype} input once scaled "
        f"((x - {col['mean']:.6g}) / {col['scale']:.6g}); expected |x - {col['mean']:.6g}| below {limit:.4g}",
    )


def finite_output(probabilities) -> bool:
    return bool(np.isfinite(np.asarray(probabilities, dtype=np.float64)).all())


OVERFLOW_INSIDE = "the model's output overflows (is not finite) on this instance"


def output_error(x_row: torch.Tensor, instance: dict, spec: dict) -> InstanceError:
    """The error of an instance whose output is not finite, naming the input value farthest out."""
    if spec.get("kind") == "table" and spec["preprocessing"]["numeric"]:
        numeric = spec["preprocessing"]["numeric"]
        z = x_row[: len(numeric)].double().abs()
        col = numeric[int(z.argmax())]
        return InstanceError(
            col["name"],
            f"{instance.get(col['name'])!r} is {float(z.max()):.3g} standard deviations from the "
            f"training mean, and {OVERFLOW_INSIDE}; expected a value nearer {col['mean']:.6g}",
        )
    if spec.get("kind") == "tensor" and x_row.is_floating_point():
        at = int(x_row.reshape(-1).double().abs().argmax())
        where = "x" + "".join(f"[{int(i)}]" for i in np.unravel_index(at, tuple(x_row.shape)))
        return InstanceError(
            "x", f"{where} = {float(x_row.reshape(-1)[at])!r} is its largest value, and {OVERFLOW_INSIDE}"
        )
    return InstanceError("", f"{OVERFLOW_INSIDE}: its input is probably far outside what the model was trained on")
