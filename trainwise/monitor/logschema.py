"""The prediction log's columns, defined once: the server writes them, the monitor reads them.

| column | Arrow type | role | what |
|---|---|---|---|
| `timestamp` | timestamp[us, UTC] | metadata | when the server answered |
| `request_id` | string | metadata | the client's `X-Request-ID` header, else a server-made id; labels join on it |
| `instance` | int32 | metadata | position of the instance in its request (0 for one-instance requests) |
| `model_version` | string | metadata | `NAME/VERSION` of a registered model, else `RUN@SHA12` |
| `latency_ms` | float64 | metadata | request latency |
| `in_<column>` | float64 / string | input | table models: one per declared column (numeric / categorical), raw values |
| `in_mean`, `in_std`, `in_min`, `in_max`, `in_zero_share`, `in_nonfinite_share` | float64 | input | tensor models (1) |
| `in_length`, `in_distinct_share`, `in_high_id_share` | float64 | input | token models (2) |
| `prediction` | string | prediction | the predicted class (the argmax id for an lm's next byte) |
| `prob_<class>` | float64 | probabilities | one per class (classification) |
| `label` | string | label | the true label: null when served, filled when labels arrive (`monitor --labels`) |

(1) a per-example summary of all its values (statistics over the finite ones).
(2) ids per example, distinct ids / length, share of ids >= vocab_size / 2 (bytes >= 128 for a
byte vocabulary).

Metadata is never tested for drift; inputs are (each `in_` column); prediction and probabilities
give prediction drift and the label-free performance estimate; labels give realised performance.
The `in_` prefix keeps a table's own column named e.g. `timestamp` apart from the metadata. A
model's training reference (model/reference.parquet, see trainwise.monitor.reference) has the
same inputs, prediction, probabilities and label columns, without metadata. The evaluation's
predictions.parquet calls its prediction `pred`; `to_monitor_layout` renames it, so both sources
reach the monitor as one layout.

>>> sorted(tensor_features(np.zeros((2, 3)))["in_zero_share"])
[1.0, 1.0]
>>> column_roles(["timestamp", "in_age", "prediction", "prob_yes", "label", "x"])["inputs"]
['in_age']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainwise.errors import DataError

TIMESTAMP, REQUEST_ID, INSTANCE, MODEL_VERSION, LATENCY_MS = (
    "timestamp",
    "request_id",
    "instance",
    "model_version",
    "latency_ms",
)
METADATA = (TIMESTAMP, REQUEST_ID, INSTANCE, MODEL_VERSION, LATENCY_MS)
INPUT_PREFIX = "in_"
PREDICTION = "prediction"
PROB_PREFIX = "prob_"
LABEL = "label"
EVAL_PREDICTION = "pred"  # evaluation's predictions.parquet name for the prediction column
TENSOR_FEATURES = ("mean", "std", "min", "max", "zero_share", "nonfinite_share")
TOKEN_FEATURES = ("length", "distinct_share", "high_id_share")
OLD_LAYOUT = ("ts", "input", "probabilities")  # what trainwise serve wrote before this schema


def input_names(spec: dict | None) -> list[str]:
    """The `in_` columns a model with input spec `spec` logs, in order ([] without a spec)."""
    if spec is None:
        return []
    if spec["kind"] == "table":
        return [INPUT_PREFIX + c["name"] for c in spec["columns"]]
    return [INPUT_PREFIX + f for f in (TENSOR_FEATURES if spec["kind"] == "tensor" else TOKEN_FEATURES)]


def input_features(spec: dict | None, examples: list) -> dict[str, list]:
    """Columns of the inputs of `examples`: raw column dicts (table), arrays of the declared shape
    (tensor) or token-id sequences (tokens). Without a spec, flat scalar dicts are logged as is."""
    if spec is None:
        if all(isinstance(v, (int, float, str)) for e in examples for v in e.values()):
            return {INPUT_PREFIX + k: [e.get(k) for e in examples] for k in (examples[0] if examples else {})}
        return {}
    if spec["kind"] == "table":
        return {
            INPUT_PREFIX + c["name"]: [_cell(e.get(c["name"]), c["type"]) for e in examples] for c in spec["columns"]
        }
    if spec["kind"] == "tensor":
        return tensor_features(np.asarray(examples, dtype=np.float64).reshape(len(examples), -1))
    return token_features(examples, spec["vocab_size"])


def _cell(value, kind: str):
    if value is None:
        return None
    return float(value) if kind == "numeric" else str(value)


def tensor_features(x: np.ndarray) -> dict[str, list]:
    """Per-example summary of a (N, D) array of flattened examples (statistics over finite values)."""
    finite = np.isfinite(x)
    n_finite = finite.sum(axis=1)
    safe = np.where(finite, x, 0.0)
    mean = safe.sum(axis=1) / np.maximum(n_finite, 1)
    var = (np.where(finite, x - mean[:, None], 0.0) ** 2).sum(axis=1) / np.maximum(n_finite, 1)
    none = n_finite == 0
    out = {
        "mean": np.where(none, np.nan, mean),
        "std": np.where(none, np.nan, np.sqrt(var)),
        "min": np.where(none, np.nan, np.where(finite, x, np.inf).min(axis=1, initial=np.inf)),
        "max": np.where(none, np.nan, np.where(finite, x, -np.inf).max(axis=1, initial=-np.inf)),
        "zero_share": (x == 0).mean(axis=1) if x.shape[1] else np.zeros(len(x)),
        "nonfinite_share": (~finite).mean(axis=1) if x.shape[1] else np.zeros(len(x)),
    }
    return {INPUT_PREFIX + k: [None if np.isnan(v) else float(v) for v in out[k]] for k in TENSOR_FEATURES}


def token_features(sequences: list, vocab_size: int) -> dict[str, list]:
    """Per-example length, distinct-id share and share of ids in the upper half of the vocabulary."""
    lengths, distinct, high = [], [], []
    for seq in sequences:
        ids = np.asarray(seq, dtype=np.int64).ravel()
        n = len(ids)
        lengths.append(float(n))
        distinct.append(len(np.unique(ids)) / n if n else None)
        high.append(float((ids >= vocab_size // 2).mean()) if n else None)
    return {
        INPUT_PREFIX + "length": lengths,
        INPUT_PREFIX + "distinct_share": distinct,
        INPUT_PREFIX + "high_id_share": high,
    }


def output_features(outputs: list[dict]) -> dict[str, list]:
    """`prediction` and `prob_<class>` of served outputs ({label, probabilities: {class: p} | [p, ...]})."""
    preds, probs = [], {}
    for i, out in enumerate(outputs):
        p = out.get("probabilities")
        label = out.get("label")
        if label is None and isinstance(p, list) and p:
            label = str(int(np.argmax(p)))  # an lm's next byte: the argmax id
        preds.append(None if label is None else str(label))
        if isinstance(p, dict):
            for cls, value in p.items():
                probs.setdefault(PROB_PREFIX + str(cls), [None] * len(outputs))[i] = float(value)
    return {PREDICTION: preds, **probs}


def arrow_type(name: str, spec: dict | None):
    """The Arrow type of a log column (so an all-null column still has its type)."""
    # lazy: pyarrow is only needed when a log is read/written; serve imports this module
    import pyarrow as pa

    fixed = {
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
        REQUEST_ID: pa.string(),
        INSTANCE: pa.int32(),
        MODEL_VERSION: pa.string(),
        LATENCY_MS: pa.float64(),
        PREDICTION: pa.string(),
        LABEL: pa.string(),
    }
    if name in fixed:
        return fixed[name]
    if spec is not None and spec["kind"] == "table" and name.startswith(INPUT_PREFIX):
        kinds = {INPUT_PREFIX + c["name"]: c["type"] for c in spec["columns"]}
        return pa.string() if kinds.get(name) == "categorical" else pa.float64()
    return pa.float64() if name.startswith((INPUT_PREFIX, PROB_PREFIX)) else None


def to_arrow(columns: dict[str, list], spec: dict | None):
    """A pyarrow Table of log columns, each with its schema type (pyarrow infers unknown ones)."""
    # lazy: pyarrow is only needed when a log is read/written; serve imports this module
    import pyarrow as pa

    arrays = {name: pa.array(values, type=arrow_type(name, spec)) for name, values in columns.items()}
    return pa.table(arrays)


def column_roles(columns) -> dict[str, list[str]]:
    """Which of `columns` are metadata, inputs, prediction, probabilities, label, or other.

    A table without `in_` columns (a plain feature table) has its other columns as inputs.
    """
    names = [str(c) for c in columns]
    roles = {
        "metadata": [c for c in names if c in METADATA],
        "inputs": [c for c in names if c.startswith(INPUT_PREFIX)],
        "prediction": [c for c in names if c in (PREDICTION, EVAL_PREDICTION)],
        "probabilities": [c for c in names if c.startswith(PROB_PREFIX)],
        "label": [c for c in names if c == LABEL],
    }
    taken = {c for cols in roles.values() for c in cols}
    roles["other"] = [c for c in names if c not in taken]
    return roles


def to_monitor_layout(frame: pd.DataFrame) -> pd.DataFrame:
    """The one layout the monitor reads: evaluation's `pred` becomes `prediction` (the log's name)."""
    if EVAL_PREDICTION in frame.columns and PREDICTION not in frame.columns:
        return frame.rename(columns={EVAL_PREDICTION: PREDICTION})
    return frame


def check_log_columns(names: list[str], where: str) -> None:
    """Refuse a log without `timestamp`, naming the column and, for an old serving log, why."""
    if TIMESTAMP in names:
        return
    if all(c in names for c in OLD_LAYOUT):
        raise DataError(
            f"{where} has no {TIMESTAMP!r} column: it was written by an older trainwise serve (columns ts, input, "
            f"probabilities, and 'label' holding the predicted class); serve the model again to write the current "
            f"layout ({TIMESTAMP}, {PREDICTION}, {PROB_PREFIX}<class>, {INPUT_PREFIX}<input>; docs/serve.md)"
        )
    raise DataError(
        f"{where} has no {TIMESTAMP!r} column (columns: {', '.join(names)}); expected a prediction log (docs/serve.md)"
    )


def training_rows(frame: pd.DataFrame, label_column: str = LABEL) -> pd.DataFrame:
    """A log window as the model's raw training rows: the `in_` columns without their prefix, plus the label.

    A plain table (no `in_` columns) is returned as it is.
    """
    inputs = column_roles(frame.columns)["inputs"]
    if not inputs:
        return frame
    rows = frame[inputs].rename(columns={c: c[len(INPUT_PREFIX) :] for c in inputs})
    if label_column in frame.columns:
        rows[label_column] = frame[label_column].to_numpy()
    return rows.reset_index(drop=True)
