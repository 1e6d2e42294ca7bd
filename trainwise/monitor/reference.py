"""A model's training reference: what `trainwise monitor --log` compares served traffic with by default.

At the end of training, `write_reference(run_dir, workload)` writes model/reference.parquet:
rows of the workload's held-out splits (validation, then test), at most `REFERENCE_ROWS` of them
(a seeded sample), in the prediction log's layout (trainwise.monitor.logschema): the inputs as the
server logs them, the model's `prediction` and `prob_<class>`, and the true `label`. Held-out
rather than training rows because they come from the same data but were not fitted, so the
model's predictions on them, and the confidence calibration the monitor learns from them, are
honest. A run directory served directly has it in model/; registration stores it with the version
(`registry/reference-<sha12>`, tag `trainwise.reference_artifact`), where the monitor finds it from
the log's `model_version`.

Table inputs are the raw source rows for the built-in `tabular` and `file` workloads (checked
against the split's features). For other table workloads they are recovered from the preprocessed
features: numeric x * scale + mean, rounded to 7 significant digits of the column's largest
magnitude, categorical the one-hot column that is set (null when none). The recovery is exact for
values on a coarse grid (integers, halves) but not for arbitrary reals, where the float32 features
lose digits: the KS test and the domain classifier can then see the tiny differences as drift, so
give such a model's monitor a --reference of raw rows.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainwise.config import load_config
from trainwise.errors import DataError, TrainwiseError
from trainwise.monitor import logschema as ls
from trainwise.monitor.drift import DriftMonitor
from trainwise.monitor.sketch import profile_layout, profile_partition
from trainwise.rundir import MODEL_JSON, load_model, read_json
from trainwise.seal import REFERENCE_FILE, REFERENCE_PROFILE, add_model_file
from trainwise.workloads.build import build_workload
from trainwise.workloads.inputs import input_spec_of
from trainwise.workloads.tabular import apply_preprocessing, load_fair
from trainwise.workloads.user import read_table

REFERENCE_ROWS = {"table": 2000, "tensor": 1000, "tokens": 256}  # an lm's forward pass over full contexts costs more
BATCH_ROWS = 256
SIGNIFICANT_DIGITS = 7


def write_reference(run_dir: str | Path, workload, seed: int = 0) -> Path | None:
    """Write run_dir/model/reference.parquet for the saved model of `workload`; None when it declares no input."""

    model_dir = Path(run_dir) / "model"
    spec = input_spec_of(read_json(model_dir / MODEL_JSON))
    if spec is None:
        return None
    try:
        model, meta = load_model(model_dir)  # the saved model, plain and on the CPU: no wrapper, no collectives
    except (
        TrainwiseError
    ) as e:  # the saved model does not rebuild: serving will say so too; the finished training stands
        warnings.warn(f"no training reference written to {model_dir}: {e}", stacklevel=2)
        return None
    splits = [s for s in (workload.val, workload.test) if s is not None and len(s)]
    if not splits:
        return None
    inputs = torch.cat([s.inputs for s in splits])
    targets = torch.cat([s.targets for s in splits])
    ids = np.concatenate([np.asarray(s.ids) for s in splits])
    limit = REFERENCE_ROWS[spec["kind"]]
    if len(inputs) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(inputs), limit, replace=False))
        inputs, targets, ids = inputs[torch.from_numpy(keep)], targets[torch.from_numpy(keep)], ids[keep]
    raw = source_rows(Path(run_dir), spec, ids, inputs) if spec["kind"] == "table" else None
    frame = reference_frame(model, meta, spec, inputs, targets, raw)
    path = model_dir / REFERENCE_FILE
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    add_model_file(
        model_dir, REFERENCE_FILE, buf.getvalue()
    )  # sealed with the model: its hash joins model/manifest.json
    write_reference_profile(model_dir, frame)
    return path


def frame_profile(frame: pd.DataFrame, tested, label_column: str) -> dict:
    """The profile of an in-memory table: its tested columns and label, on bins from its own quantiles."""
    frame = ls.to_monitor_layout(frame)
    columns = list(dict.fromkeys(tested(list(frame.columns)) + ([label_column] if label_column in frame else [])))
    return profile_partition(frame[columns], profile_layout(frame[columns]), carry=(label_column,))


def write_reference_profile(model_dir: Path, frame: pd.DataFrame) -> None:
    """model/reference_profile.json, sealed too: the monitor's profile of the reference (trainwise.monitor.sketch),
    so a monitor, or a serving process keeping a live profile, needs no raw reference rows."""

    profile = frame_profile(frame, DriftMonitor()._tested, ls.LABEL)
    add_model_file(model_dir, REFERENCE_PROFILE, json.dumps(profile).encode())


def reference_frame(
    model, meta: dict, spec: dict, inputs: torch.Tensor, targets: torch.Tensor, raw: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Inputs (log layout), prediction, prob_<class> and label of examples the model sees as `inputs`
    (a table's `raw` rows when known, else recovered from the features)."""
    if spec["kind"] == "table" and raw is not None:
        features = ls.input_features(spec, raw.to_dict("records"))  # exactly as the server logs them
    elif spec["kind"] == "table":
        features = raw_table(spec, inputs.double().numpy())
    elif spec["kind"] == "tensor":
        features = ls.tensor_features(inputs.double().reshape(len(inputs), -1).numpy())
    else:
        features = ls.token_features(list(inputs.numpy()), spec["vocab_size"])
    frame = pd.DataFrame(features)
    logits = _logits(model, inputs)
    if meta.get("task") == "lm":
        frame[ls.PREDICTION] = [str(int(i)) for i in logits[:, -1].argmax(-1)]
        frame[ls.LABEL] = [str(int(t)) for t in targets[:, -1]]
        return frame
    prob = torch.softmax(logits.float(), dim=-1).numpy()
    classes = np.asarray((meta.get("info") or {}).get("classes") or [str(i) for i in range(prob.shape[1])])
    frame[ls.PREDICTION] = classes[prob.argmax(axis=1)]
    for i, c in enumerate(classes):
        frame[ls.PROB_PREFIX + str(c)] = prob[:, i].astype(np.float64)
    frame[ls.LABEL] = classes[targets.numpy()]
    return frame


@torch.inference_mode()
def _logits(model, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(inputs[i : i + BATCH_ROWS]).float() for i in range(0, len(inputs), BATCH_ROWS)])


def source_rows(run_dir: Path, spec: dict, ids: np.ndarray, inputs: torch.Tensor) -> pd.DataFrame | None:
    """The raw rows behind the examples of a built-in table workload, or None.

    `tabular` (the Fair table) and `file` (the user's file) number their examples by source row
    (Split.ids). The rows are used only if the model's own preprocessing turns them back into the
    split's features, so a changed numbering falls back to recovering values from the features.
    """

    try:
        cfg = load_config(run_dir / "config.toml", [])
        frame = {"tabular": load_fair, "file": lambda: read_table(cfg.workload.path, cfg.workload.column_types)}.get(
            cfg.workload.name, lambda: None
        )()
        names = [c["name"] for c in spec["columns"]]
        if frame is None or len(ids) == 0 or int(ids.max()) >= len(frame) or not set(names) <= set(frame.columns):
            return None
        rows = frame.iloc[ids][names].reset_index(drop=True)
        for c in spec["columns"]:
            if c["type"] == "categorical":  # as the file workload reads them
                rows[c["name"]] = rows[c["name"]].fillna("<missing>").astype(str)
        again = apply_preprocessing(spec["preprocessing"], rows)
    except (TrainwiseError, OSError):
        return None
    return rows if np.allclose(again, inputs.numpy(), atol=1e-5) else None


def raw_table(spec: dict, features: np.ndarray) -> dict[str, list]:
    """The raw `in_` columns behind preprocessed (N, F) features (inverse of tabular.apply_preprocessing)."""
    prep = spec["preprocessing"]
    out, at = {}, 0
    for c in prep["numeric"]:
        values = features[:, at] * c["scale"] + c["mean"]
        out[c["name"]] = _round_significant(values).tolist()
        at += 1
    for c in prep["numeric"]:  # missing indicators of imputed columns (tabular.feature_names): the cell was missing
        if c.get("indicator"):
            flags = features[:, at]
            out[c["name"]] = [None if flag > 0.5 else v for v, flag in zip(out[c["name"]], flags, strict=True)]
            at += 1
    for c in prep["categorical"]:
        block = features[:, at : at + len(c["categories"])]
        cats = np.asarray(c["categories"], dtype=object)
        out[c["name"]] = np.where(block.max(axis=1) > 0.5, cats[block.argmax(axis=1)], None).tolist()
        at += len(c["categories"])
    return {ls.INPUT_PREFIX + c["name"]: out[c["name"]] for c in spec["columns"] if c["name"] in out}


def _round_significant(values: np.ndarray) -> np.ndarray:
    largest = float(np.max(np.abs(values))) if len(values) else 0.0
    if largest == 0:
        return values
    decimals = max(0, SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(largest))))
    return np.round(values, decimals)


def read_reference(path: str | Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise DataError(f"the training reference of {what} ({path}) could not be read: {e}") from None


def build_run_reference(run_dir: Path) -> Path | None:
    """Write the training reference of a run trained before references existed (from its config.toml)."""

    cfg = load_config(run_dir / "config.toml", [])
    return write_reference(run_dir, build_workload(cfg))
