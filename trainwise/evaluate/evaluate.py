"""`trainwise evaluate RUN_DIR`: predictions, metrics and a report for a trained run.

Reads the run directory's config.toml and model/, rebuilds the workload (its data splits), runs
the model over one split and writes eval/predictions.parquet, eval/metrics.json, eval/report.html.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from trainwise.config import load_config
from trainwise.errors import DataError
from trainwise.evaluate.metrics import compute_metrics
from trainwise.evaluate.predict import predict_split
from trainwise.evaluate.report import render_report
from trainwise.evaluate.robustness import robustness
from trainwise.rundir import load_model, write_atomic, write_json
from trainwise.workloads.base import fingerprint_split, get_workload_fn
from trainwise.workloads.inputs import input_spec_of

SPLITS = ("val", "test")


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    slices: list[str] | None = None,
    out: str | Path | None = None,
    n_boot: int = 200,
    with_robustness: bool = True,
) -> dict:
    """Evaluate a run directory; returns the metrics.json content (also written to `out`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.toml").is_file():
        raise DataError(f"{run_dir} has no config.toml; is it a run directory written by `trainwise train`?")
    if split not in SPLITS:
        raise DataError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    cfg = load_config(run_dir / "config.toml")
    workload = get_workload_fn(cfg.workload.name)(cfg)
    model, meta = load_model(run_dir)
    task = meta.get("task", workload.task)
    info = {**workload.info, **meta.get("info", {})}
    classes = info.get("classes")
    data = getattr(workload, split)
    slices = list(slices if slices is not None else (cfg.eval.slices or info.get("slice_columns", [])))
    available = [] if data.meta is None else list(data.meta.columns)
    missing = [s for s in slices if s not in available]
    if missing:
        raise DataError(
            f"slice column(s) {', '.join(missing)} do not exist in the {split} split of workload {workload.name!r} "
            f"(available: {', '.join(available) or 'none'})"
        )

    pred_df = predict_split(model, data, task, classes, cfg.eval.batch_size)
    metrics = compute_metrics(pred_df, task, classes, slices, cfg.eval.min_slice_count, n_boot=n_boot)
    if with_robustness:
        spec = input_spec_of(meta) or workload.input  # the saved model's own declaration first
        metrics["robustness"] = robustness(
            model, data, task, classes, spec, metrics, workload.shifted, cfg.eval.batch_size
        )
    metrics.update(
        {
            "run_dir": str(run_dir),
            "workload": workload.name,
            "split": split,
            "split_fingerprint": fingerprint_split(data),
        }
    )

    out = Path(out) if out is not None else run_dir / "eval"
    write_predictions(pred_df, out / "predictions.parquet")
    write_json(out / "metrics.json", metrics)
    write_atomic(
        out / "report.html",
        render_report(metrics, pred_df, f"Evaluation of {run_dir.name} ({workload.name}, {split} split)"),
    )
    return metrics


def write_predictions(pred_df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    pred_df.to_parquet(buf, index=False)
    write_atomic(path, buf.getvalue())
