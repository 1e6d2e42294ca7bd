"""What a model takes as input: the input spec every workload declares.

Three kinds, each a plain JSON-ready dict so it can travel in model/model.json (`"input"`):

- **table**: named, typed columns plus the fitted preprocessing that turns raw rows into the
  model's feature tensor (standard scaling, one-hot encoding: the dict
  `trainwise.workloads.tabular.fit_preprocessing` returns, checked here because serving applies it).
  `{"kind": "table", "columns": [{"name": "age", "type": "numeric"}, {"name": "job", "type":
  "categorical", "categories": ["a", "b"]}], "preprocessing": {...}}`
- **tensor**: the shape of one example without the batch dimension, and its dtype; optionally the
  range its values live in (pixels in [0, 1]).
  `{"kind": "tensor", "shape": [1, 8, 8], "dtype": "float32", "value_range": [0.0, 1.0]}`
- **tokens**: integer token ids below `vocab_size`, at most `context` of them per example.
  `{"kind": "tokens", "vocab_size": 256, "context": 128}`

Serving builds its request schema from it, export builds its example input from it, evaluation
picks the perturbations that fit it, and the prediction log and the monitor know which columns are
inputs. Build one with `table_input`, `tensor_input` or `tokens_input`:

>>> tensor_input((3, 16), "float32")
{'kind': 'tensor', 'shape': [3, 16], 'dtype': 'float32'}
>>> tokens_input(256, 128)["kind"]
'tokens'
"""

from __future__ import annotations

from typing import Any

import torch

from trainwise.errors import ConfigError

INPUT_KINDS = ("table", "tensor", "tokens")
COLUMN_TYPES = ("numeric", "categorical")
# dtypes a tensor input may declare: the ones a JSON request can carry (numbers), by torch name
TENSOR_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
HOW_TO_DECLARE = (
    "declare it in your Workload: Workload(..., input=tensor_input(shape, dtype)) for tensors, "
    "tokens_input(vocab_size, context) for token ids, or table_input(columns, preprocessing) for tables "
    "(from trainwise.workloads.inputs), then train again; see README, 'Your own PyTorch model'"
)


def table_input(columns: list[dict], preprocessing: dict) -> dict:
    """A table: `columns` [{name, type: numeric|categorical, categories?}] and fitted `preprocessing`."""
    return validate_input_spec({"kind": "table", "columns": [dict(c) for c in columns], "preprocessing": preprocessing})


def tensor_input(shape, dtype: str | torch.dtype = "float32", value_range: tuple[float, float] | None = None) -> dict:
    """A tensor of `shape` (no batch dimension) and `dtype`, values optionally within `value_range`."""
    name = dtype_name(dtype) if isinstance(dtype, torch.dtype) else dtype
    spec: dict[str, Any] = {"kind": "tensor", "shape": [int(s) for s in shape], "dtype": name}
    if value_range is not None:
        spec["value_range"] = [float(value_range[0]), float(value_range[1])]
    return validate_input_spec(spec)


def tokens_input(vocab_size: int, context: int) -> dict:
    """Token ids in [0, vocab_size), at most `context` per example."""
    return validate_input_spec({"kind": "tokens", "vocab_size": int(vocab_size), "context": int(context)})


def dtype_name(dtype: torch.dtype) -> str:
    for name, d in TENSOR_DTYPES.items():
        if d == dtype:
            return name
    raise ConfigError(f"input dtype {dtype}: not one a request can carry (expected one of {', '.join(TENSOR_DTYPES)})")


def validate_input_spec(spec: Any, where: str = "Workload.input") -> dict:
    """Return `spec` if it is a well-formed input spec, else raise a ConfigError naming the field."""
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where}: expected a dict made by table_input/tensor_input/tokens_input, got {type(spec).__name__}"
        )
    kind = spec.get("kind")
    if kind not in INPUT_KINDS:
        raise ConfigError(f"{where}.kind = {kind!r}: expected one of {', '.join(INPUT_KINDS)}")
    if kind == "table":
        _check_table(spec, where)
    elif kind == "tensor":
        shape = spec.get("shape")
        if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ConfigError(
                f"{where}.shape = {shape!r}: expected a non-empty list of positive sizes, without the batch dimension"
            )
        if spec.get("dtype") not in TENSOR_DTYPES:
            raise ConfigError(f"{where}.dtype = {spec.get('dtype')!r}: expected one of {', '.join(TENSOR_DTYPES)}")
        vr = spec.get("value_range")
        if vr is not None and not (isinstance(vr, list) and len(vr) == 2 and vr[0] < vr[1]):
            raise ConfigError(f"{where}.value_range = {vr!r}: expected [low, high] with low < high")
    else:
        for key in ("vocab_size", "context"):
            if not isinstance(spec.get(key), int) or spec[key] < 1:
                raise ConfigError(f"{where}.{key} = {spec.get(key)!r}: expected a positive integer")
    return spec


def _check_table(spec: dict, where: str) -> None:
    columns = spec.get("columns")
    if not isinstance(columns, list) or not columns:
        raise ConfigError(f"{where}.columns: expected a non-empty list of {{name, type}} dicts")
    seen = set()
    for i, col in enumerate(columns):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str) or col.get("type") not in COLUMN_TYPES:
            raise ConfigError(
                f"{where}.columns[{i}] = {col!r}: expected {{'name': str, 'type': 'numeric' or 'categorical'}}"
            )
        if col["name"] in seen:
            raise ConfigError(f"{where}.columns: column {col['name']!r} appears twice")
        seen.add(col["name"])
    _check_preprocessing(spec.get("preprocessing"), {c["name"] for c in columns}, where)


def _check_preprocessing(prep: Any, declared: set[str], where: str) -> None:
    # Serving and robustness apply it with trainwise.workloads.tabular.apply_preprocessing, so its
    # shape is part of the contract: refuse at training time what would fail at the first request.
    expected = "the fitted preprocessing dict of trainwise.workloads.tabular.fit_preprocessing"
    if (
        not isinstance(prep, dict)
        or not isinstance(prep.get("numeric"), list)
        or not isinstance(prep.get("categorical"), list)
    ):
        raise ConfigError(f"{where}.preprocessing: expected {expected} ({{'numeric': [...], 'categorical': [...]}})")
    for key, fields in (("numeric", ("name", "mean", "scale")), ("categorical", ("name", "categories"))):
        for i, item in enumerate(prep[key]):
            if not isinstance(item, dict) or any(f not in item for f in fields):
                raise ConfigError(
                    f"{where}.preprocessing.{key}[{i}] = {item!r}: expected a dict with {', '.join(fields)} "
                    f"({expected})"
                )
            if item["name"] not in declared:
                raise ConfigError(
                    f"{where}.preprocessing.{key}[{i}]: column {item['name']!r} is not among the declared columns"
                )


def input_spec_of(meta: dict) -> dict | None:
    """The input spec of a saved model's model.json `meta`, or None when it declares none.

    Models saved before the spec existed are read from their older fields (`info.input_schema` +
    `info.preprocessing` for tables, `info.input_shape` for images, the lm's context), so that
    versions registered earlier keep serving.
    """
    if meta.get("input") is not None:
        return validate_input_spec(meta["input"], "model.json input")
    info = meta.get("info") or {}
    if "input_schema" in info and "preprocessing" in info:
        return {"kind": "table", "columns": info["input_schema"], "preprocessing": info["preprocessing"]}
    if "input_shape" in info:
        return {"kind": "tensor", "shape": list(info["input_shape"]), "dtype": "float32", "value_range": [0.0, 1.0]}
    kwargs = (meta.get("spec") or {}).get("kwargs") or {}
    if meta.get("task") == "lm" and "context" in kwargs:
        return {"kind": "tokens", "vocab_size": int(info.get("vocab_size", 256)), "context": int(kwargs["context"])}
    return None


def require_input_spec(meta: dict, what: str, source: str = "model.json") -> dict:
    """The model's input spec, or a clear error saying `what` needs one and how to declare it.

    `source` names the file in the message (the model.json path, when the caller knows it).
    """
    spec = input_spec_of(meta)
    if spec is None:
        raise ConfigError(f"{what} needs to know the model's input, and {source} declares none: {HOW_TO_DECLARE}")
    return spec


def check_split_matches(spec: dict, inputs: torch.Tensor, where: str) -> None:
    """Refuse a declared spec that the workload's own data contradicts (a typo caught at training time)."""
    if spec["kind"] == "tensor":
        got = list(inputs.shape[1:])
        if got != spec["shape"]:
            raise ConfigError(
                f"{where}: Workload.input declares shape {spec['shape']} but the examples have shape {got} (without "
                "the batch dimension)"
            )
        if _number_kind(TENSOR_DTYPES[spec["dtype"]]) != _number_kind(inputs.dtype):
            raise ConfigError(
                f"{where}: Workload.input declares dtype {spec['dtype']} but the examples are {inputs.dtype}"
            )
    elif spec["kind"] == "table":
        width = table_width(spec["preprocessing"])
        if inputs.dim() != 2 or inputs.shape[1] != width:
            raise ConfigError(
                f"{where}: Workload.input's preprocessing makes {width} features but the examples have shape "
                f"{list(inputs.shape)}; expected (N, features) as apply_preprocessing returns them"
            )
    elif spec["kind"] == "tokens":
        if inputs.is_floating_point() or inputs.dim() != 2:
            raise ConfigError(
                f"{where}: Workload.input declares tokens but the examples are {inputs.dtype} of shape "
                f"{list(inputs.shape)}; expected (N, T) integer ids"
            )
        if inputs.shape[1] > spec["context"]:
            raise ConfigError(
                f"{where}: Workload.input declares context {spec['context']} but the examples hold {inputs.shape[1]} "
                "tokens"
            )
        if len(inputs) and int(inputs.max()) >= spec["vocab_size"]:
            raise ConfigError(
                f"{where}: Workload.input declares vocab_size {spec['vocab_size']} but the examples hold token id "
                f"{int(inputs.max())}"
            )


def table_width(preprocessing: dict) -> int:
    """Features the table preprocessing makes: one per numeric column, one missing-indicator per
    imputed numeric column, one per trained category (`tabular.feature_names`)."""
    n_indicators = sum(1 for c in preprocessing["numeric"] if c.get("indicator"))
    return (
        len(preprocessing["numeric"]) + n_indicators + sum(len(c["categories"]) for c in preprocessing["categorical"])
    )


def _number_kind(dtype: torch.dtype) -> str:
    return "bool" if dtype == torch.bool else "float" if dtype.is_floating_point else "integer"
