"""Run directories with real content for registry tests: a trained tabular MLP, its files and eval/."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from trainwise.config import config_to_toml, load_config
from trainwise.rundir import save_model, write_atomic, write_json
from trainwise.workloads.base import fingerprint_split, get_workload_fn

OVERRIDES = ["workload.name=tabular", "model.n_layers=1", "model.d_model=16"]


def build_workload():
    cfg = load_config(None, OVERRIDES)
    return cfg, get_workload_fn("tabular")(cfg)


def write_eval(run_dir, model, w) -> dict:
    """eval/: predictions.parquet (id, label, pred, prob_<class>) and metrics.json from sklearn."""
    with torch.no_grad():
        prob = torch.softmax(model(w.test.inputs).double(), -1).numpy()
    y = w.test.targets.numpy()
    pred = prob.argmax(1)
    classes = w.info["classes"]
    names = np.asarray(classes)
    frame = pd.DataFrame(
        {
            "id": w.test.ids,
            "label": names[y],
            "pred": names[pred],
            **{f"prob_{c}": prob[:, i] for i, c in enumerate(classes)},
        }
    )
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    frame.to_parquet(run_dir / "eval" / "predictions.parquet")
    slices = {}
    for value in sorted(w.test.meta["education"].unique()):
        m = (w.test.meta["education"] == value).to_numpy()
        slices[value] = {"accuracy": accuracy_score(y[m], pred[m]), "n": int(m.sum())}
    metrics = {
        "accuracy": accuracy_score(y, pred),
        "log_loss": log_loss(y, prob, labels=[0, 1]),
        "brier": brier_score_loss(y, prob[:, 1]),
        "n": len(y),
        "slices": {"education": slices},
    }
    write_json(run_dir / "eval" / "metrics.json", metrics)
    write_atomic(run_dir / "eval" / "report.html", f"<html><body>accuracy {metrics['accuracy']}</body></html>")
    return metrics


def make_run(root, name: str, workload, steps: int, seed: int = 0, with_eval: bool = True, flip_labels: bool = False):
    """A finished run directory: a model trained `steps` AdamW steps, its files and eval/.

    `flip_labels` trains on inverted binary labels: a deliberately worse model for gate tests.
    """
    cfg, w = workload
    torch.manual_seed(seed)
    model = type(w.model)(**w.spec["kwargs"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(w.train), (64,), generator=gen)
        x, y = w.train.batch(idx)
        y = 1 - y if flip_labels else y
        loss = w.loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    run_dir = root / name
    save_model(model, run_dir / "model", {"spec": w.spec, "task": w.task, "info": w.info, "workload": w.name})
    write_atomic(run_dir / "config.toml", config_to_toml(cfg))
    write_json(
        run_dir / "env.json",
        {
            "git_sha": "abc123",
            "seed": seed,
            "precision": "fp32",
            "data_fingerprints": {s: fingerprint_split(getattr(w, s)) for s in ("train", "val", "test")},
        },
    )
    write_json(
        run_dir / "summary.json",
        {
            "status": "finished",
            "steps": steps,
            "precision": "fp32",
            "ac": "none",
            "strategy": "single",
            "world_size": 1,
            "median_step_ms": 1.5,
        },
    )
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in range(1, 4))
    )
    if with_eval:
        write_eval(run_dir, model, w)
    return run_dir, model


def fake_gate(baseline_eval_dir, candidate_eval_dir, gate_path=None):
    """Stand-in for the evaluate component's gate: accuracy may drop by at most 0.02."""
    base = json.loads((baseline_eval_dir / "metrics.json").read_text())["accuracy"]
    cand = json.loads((candidate_eval_dir / "metrics.json").read_text())["accuracy"]
    passed = cand >= base - 0.02
    failures = [] if passed else [f"accuracy: {cand:.4f} < baseline {base:.4f} - 0.02"]
    return passed, failures, {"baseline_accuracy": base, "candidate_accuracy": cand, "passed": passed}
