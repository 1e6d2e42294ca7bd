"""What serving in a lower precision costs: accuracy on the test split against the fp32 model.

`precision_change(run_dir, "int8")` runs evaluate's `predict_split` on the run's test split with
the fp32 model and with the served precision, and reports both accuracies, their difference,
how often the two predict the same class, and the largest probability difference. For lm the
accuracy is next-byte accuracy and the mean loss in nats is reported as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainwise.config import load_config
from trainwise.errors import DataError
from trainwise.evaluate.predict import predict_split
from trainwise.registry.lineage import TAG
from trainwise.registry.store import get_client
from trainwise.rundir import load_model
from trainwise.serve.runtime import apply_precision, resolve_ref
from trainwise.workloads.base import get_workload_fn


def _scores(frame, task: str) -> dict:
    if task == "lm":
        weights = frame["n_positions"].to_numpy()
        return {
            "accuracy": float(np.average(frame["correct"], weights=weights)),
            "loss_nats": float(np.average(frame["loss"], weights=weights)),
        }
    # lazy: sklearn takes seconds to import; only the precision quality check uses it
    from sklearn.metrics import accuracy_score

    return {"accuracy": float(accuracy_score(frame["label"], frame["pred"]))}


def precision_change(run_dir: str | Path, precision: str, split: str = "test") -> dict:
    """Accuracy of `run_dir`'s model served in `precision` vs fp32 on `split`."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise DataError(f"{run_dir} has no config.toml; the precision check needs the run directory (its data split)")
    cfg = load_config(run_dir / "config.toml")
    data = getattr(get_workload_fn(cfg.workload.name)(cfg), split)
    frames = {}
    for p in ("fp32", precision):
        model, meta = load_model(run_dir)
        model = apply_precision(model.eval(), p)
        frames[p] = predict_split(model, data, meta["task"], meta.get("info", {}).get("classes"), cfg.eval.batch_size)
    base, served = _scores(frames["fp32"], meta["task"]), _scores(frames[precision], meta["task"])
    out = {
        "precision": precision,
        "split": split,
        "n": len(data),
        "fp32": base,
        precision: served,
        "accuracy_change": served["accuracy"] - base["accuracy"],
    }
    if meta["task"] != "lm":
        prob_cols = [c for c in frames["fp32"].columns if c.startswith("prob_")]
        out["agreement"] = float((frames["fp32"]["pred"] == frames[precision]["pred"]).mean())
        out["max_prob_diff"] = float(
            np.abs(frames["fp32"][prob_cols].to_numpy() - frames[precision][prob_cols].to_numpy()).max()
        )
    return out


def run_dir_of(ref: str, tracking_uri: str | None = None) -> Path:
    """The run directory behind a reference: itself, or a registered version's recorded run_dir."""
    model_dir, meta = resolve_ref(ref, tracking_uri)
    reg = meta.get("registry")
    if reg:
        tags = get_client(reg.get("tracking_uri") or tracking_uri).get_model_version(reg["name"], reg["version"]).tags
        if tags.get(TAG + "run_dir"):
            return Path(tags[TAG + "run_dir"])
    return model_dir.parent if model_dir.name == "model" else model_dir
