"""`trainwise evaluate` on real run directories: files written, numbers consistent, bad input clear."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from trainwise.evaluate.evaluate import evaluate_run
from trainwise.evaluate.predict import predict_split
from trainwise.rundir import load_model
from trainwise.workloads.base import Split

from .conftest import train_lm


def test_evaluate_tabular_run_writes_consistent_files(tabular_runs, tmp_path):
    run = tabular_runs[0]
    m = evaluate_run(run, out=tmp_path / "ev", n_boot=50)
    files = {p.name for p in (tmp_path / "ev").iterdir()}
    assert {"predictions.parquet", "metrics.json", "report.html"} <= files
    pred = pd.read_parquet(tmp_path / "ev" / "predictions.parquet")
    assert {"id", "label", "pred", "prob_no", "prob_yes", "education", "occupation"} <= set(pred.columns)
    assert np.allclose(pred[["prob_no", "prob_yes"]].sum(axis=1), 1.0)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(pred["label"], pred["pred"]))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(pred["label"] == "yes", pred["prob_yes"]))
    on_disk = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "roc_auc", "log_loss", "brier", "ece", "slices"):
        assert key in on_disk
    assert set(on_disk["slices"]) == {"education", "occupation"}
    assert any(r["small"] for r in on_disk["slices"]["occupation"])  # rare occupations are flagged, not hidden
    assert {"gaussian_noise_0.5sd", "missing_values_0.1"} <= set(on_disk["robustness"])
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.replace("http-equiv", "")


def test_predict_split_matches_the_model(tabular_runs):
    model, meta = load_model(tabular_runs[0])
    x = torch.randn(10, model.blocks[0].fc.in_features)
    split = Split(inputs=x, targets=torch.zeros(10, dtype=torch.long), ids=np.arange(100, 110))
    df = predict_split(model, split, "classification", ["no", "yes"], batch_size=3)
    expected = torch.softmax(model(x), dim=-1).detach().numpy()
    np.testing.assert_allclose(df[["prob_no", "prob_yes"]].to_numpy(), expected, rtol=1e-5)
    assert df["id"].tolist() == list(range(100, 110))


def test_evaluate_is_deterministic(tabular_runs, tmp_path):
    a = evaluate_run(tabular_runs[0], out=tmp_path / "1", n_boot=30)
    b = evaluate_run(tabular_runs[0], out=tmp_path / "2", n_boot=30)
    assert a["robustness"] == b["robustness"] and a["slices"] == b["slices"]


def test_evaluate_lm_run(tmp_path):
    run = train_lm(tmp_path / "lm", steps=5)
    m = evaluate_run(run, split="test", n_boot=30)
    pred = pd.read_parquet(run / "eval" / "predictions.parquet")
    assert {"id", "loss", "correct", "group", "position_loss"} <= set(pred.columns)
    assert len(pred["position_loss"][0]) == 16
    assert m["loss"] == pytest.approx(np.mean(np.stack(pred["position_loss"]).astype(np.float64)), rel=1e-3)
    assert m["bits_per_byte"] == pytest.approx(m["loss"] / np.log(2))
    assert 0 <= m["next_byte_accuracy"] <= 1 and m["groups"]
    assert m["robustness"]["byte_corruption_0.05"]["loss"]["value"] is not None


def test_evaluate_bad_input(tabular_runs, tmp_path, cli_main, capsys):
    assert cli_main(["evaluate", str(tabular_runs[0]), "--slices", "education,zodiac", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "slice column(s) zodiac do not exist" in err and "education" in err and "Traceback" not in err
    assert cli_main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_cli(tabular_runs, tmp_path, cli_main, capsys):
    assert (
        cli_main(["evaluate", str(tabular_runs[1]), "--out", str(tmp_path), "--no-robustness", "--bootstrap", "20"])
        == 0
    )
    out = capsys.readouterr().out
    assert "accuracy=" in out and (tmp_path / "metrics.json").is_file()
    assert "robustness" not in json.loads((tmp_path / "metrics.json").read_text())
