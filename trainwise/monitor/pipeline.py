"""The real retraining steps behind `trainwise monitor --act` and `trainwise watch`.

When a trigger fires on a window of labelled rows, the champion's own recipe is trained again on
that window (workload `file`, the label column as target), evaluated on the window's held-out
rows, registered, and gated against the champion *on those same rows*: both models predict the
same examples, so the comparison is paired (McNemar, paired intervals) as everywhere else. The
champion is promoted over only when the gate passes (a fail or an inconclusive verdict rejects);
every step is written to the registry's audit trail. Tabular models only: they carry their
preprocessing, so the champion can score the window's raw rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trainwise.config import load_config
from trainwise.errors import DataError
from trainwise.evaluate.compare import compare_predictions, read_predictions
from trainwise.evaluate.evaluate import evaluate_run
from trainwise.evaluate.gate import default_gate, load_gate
from trainwise.monitor.retrain import RetrainSteps
from trainwise.registry import audit
from trainwise.registry.gate import verdict_reasons
from trainwise.registry.promote import promote
from trainwise.registry.store import get_client, move_lock
from trainwise.registry.versions import get_alias_version, register_run, resolve_model_ref
from trainwise.rundir import load_model
from trainwise.train.loop import train
from trainwise.workloads.tabular import apply_preprocessing


def _champion_config(client, mv, work: Path) -> Path:
    # lazy: mlflow is heavy and only needed when the registry is reached
    import mlflow.artifacts

    uri = f"{client.get_run(mv.run_id).info.artifact_uri}/config.toml"
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(work / "champion"), tracking_uri=client.tracking_uri
        )
    )


def champion_predictions(model, meta: dict, rows: pd.DataFrame, ids: np.ndarray, label_column: str) -> pd.DataFrame:
    """The champion's predictions on raw rows, in the predictions.parquet layout (id, label, pred, prob_<class>)."""

    classes = meta["info"]["classes"]
    x = torch.from_numpy(apply_preprocessing(meta["info"]["preprocessing"], rows))
    with torch.no_grad():
        prob = torch.softmax(model(x).float(), -1).numpy()
    frame = pd.DataFrame(
        {"id": ids, "label": rows[label_column].astype(str).to_numpy(), "pred": np.asarray(classes)[prob.argmax(1)]}
    )
    for i, c in enumerate(classes):
        frame[f"prob_{c}"] = prob[:, i]
    return frame


def real_steps(
    name: str,
    alias: str,
    label_column: str,
    work_dir: str | Path,
    tracking_uri: str | None = None,
    gate_path: str | None = None,
    train_overrides: tuple[str, ...] = (),
) -> RetrainSteps:
    """RetrainSteps wired to trainwise.train, trainwise.evaluate and trainwise.registry."""

    # Over 60 lines on purpose: the retrain loop's step functions are closures over the same arguments, defined side
    # by side so they read as one wiring
    work = Path(work_dir)
    client = get_client(tracking_uri)
    champion = get_alias_version(client, name, alias)  # unknown name/alias: error listing what exists
    champion_dir, champion_ref = resolve_model_ref(f"{name}@{alias}", tracking_uri)
    champion_model, champion_meta = load_model(champion_dir, registered=champion_ref["registry"])
    if "preprocessing" not in champion_meta.get("info", {}):
        raise DataError(
            f"{name}@{alias} is a {champion_meta.get('workload')!r} model; retraining on a data window "
            "supports tabular models (workload tabular or file)"
        )
    config_path = _champion_config(client, champion, work)
    verdict: dict = {}

    def train_step(data_path: Path) -> Path:
        cfg = load_config(
            config_path,
            [
                "workload.name=file",
                f"workload.path={data_path}",
                f"workload.target={label_column}",
                "log.progress=false",
                "log.mlflow=false",
                *train_overrides,
            ],
        )
        return train(cfg, work / "run").run_dir

    def evaluate_step(run_dir: Path) -> Path:
        evaluate_run(run_dir, split="test", with_robustness=False)
        return run_dir / "eval"

    def register_step(run_dir: Path) -> str:
        return str(register_run(run_dir, name, tracking_uri).version)

    def gate_step(eval_dir: Path) -> tuple[str, list[str]]:
        candidate = read_predictions(eval_dir / "predictions.parquet")
        window = pd.read_parquet(work / "window.parquet")
        ids = candidate["id"].to_numpy()
        baseline = champion_predictions(champion_model, champion_meta, window.iloc[ids], ids, label_column)
        gate = load_gate(gate_path) if gate_path else default_gate()
        comparison = compare_predictions(baseline, candidate, task="classification", gate=gate)
        verdict.update(
            outcome=comparison.verdict,
            reasons=verdict_reasons(comparison),
            evidence={
                "compared_on": "held-out rows of the retraining window",
                "baseline_version": str(champion.version),
                "comparison": comparison.to_dict(),
            },
        )
        return verdict["outcome"], verdict["reasons"]

    def promote_step(version: str, reason: str) -> None:
        def judge(current):
            if current != str(champion.version):
                return (
                    "fail",
                    [f"{alias} moved to v{current} during retraining (gated against v{champion.version})"],
                    verdict["evidence"],
                )
            return verdict["outcome"], verdict["reasons"], verdict["evidence"]

        promote(name, version, alias, reason=reason, tracking_uri=tracking_uri, judge_fn=judge)

    def audit_step(event: dict) -> None:
        fields = {
            "action": event["event"],
            "alias": alias,
            "to_version": str(event.get("version", "")),
            "reason": str(event.get("reason", ""))[:4000],
            "verdict": "; ".join(event.get("gate_reasons", []))[:4000],
        }
        with move_lock(client.tracking_uri):
            entry = audit.append_entry(client, name, fields, {k: v for k, v in event.items() if k != "event"})
            client.set_terminated(entry["run_id"], "FINISHED")

    return RetrainSteps(
        train=train_step,
        evaluate=evaluate_step,
        register=register_step,
        gate=gate_step,
        promote=promote_step,
        audit=audit_step,
    )
