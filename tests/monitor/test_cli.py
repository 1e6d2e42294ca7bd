"""`trainwise monitor` end to end through cli.main, and its bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_table

from tests.realruns import copy_run


@pytest.fixture
def files(tmp_path):
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.csv"
    make_table(3000, seed=1).to_parquet(ref)
    make_table(2000, seed=2, shift_sd=0.5).to_csv(cur, index=False)
    return ref, cur


def _log(folder, n_hours: int, rows_per_hour: int, shift_from_hour: int | None = None):
    """A prediction log: one Parquet file per hour; x0 moves by 1 SD from `shift_from_hour` on."""
    folder.mkdir()
    start = pd.Timestamp("2026-11-20T00:00:00")
    for h in range(n_hours):
        part = make_table(
            rows_per_hour, seed=100 + h, shift_sd=1.0 if shift_from_hour is not None and h >= shift_from_hour else 0.0
        )
        part.insert(0, "timestamp", start + pd.Timedelta(hours=h) + pd.to_timedelta(np.arange(rows_per_hour), unit="s"))
        part.to_parquet(folder / f"part-{h:03d}.parquet")
    return folder


def test_files_write_drift_json_and_self_contained_html(run_cli, files, tmp_path):
    ref, cur = files
    out = tmp_path / "out"
    code, stdout, _ = run_cli("monitor", "--reference", ref, "--current", cur, "--out", out)
    assert code == 0
    drift = json.loads((out / "drift.json").read_text())
    assert drift["dataset_drift"] is True and drift["expected_false_alarm_rate"] == 0.025
    assert [c["name"] for c in drift["columns"] if c["drift"]] == ["x0"]
    assert all({"name", "test", "effect_size", "p_value", "drift"} <= set(c) for c in drift["columns"])
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    assert "x0" in stdout and "DRIFT" in stdout


def test_json_flag_and_fail_on_drift(run_cli, files):
    ref, cur = files
    code, stdout, _ = run_cli("monitor", "--reference", ref, "--current", cur, "--json", "--fail-on-drift")
    assert code == 1
    assert json.loads(stdout)["dataset_drift"] is True
    code, _, _ = run_cli("monitor", "--reference", ref, "--current", ref, "--fail-on-drift")
    assert code == 0


def test_log_windows_timeline_and_trigger(run_cli, tmp_path):
    log = _log(tmp_path / "log", n_hours=4, rows_per_hour=600, shift_from_hour=3)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        "monitor", "--log", log, "--window", "1h", "--out", out, "--set", "monitor.trigger_columns=x0"
    )
    assert code == 0
    drift = json.loads((out / "drift.json").read_text())
    assert [w["dataset_drift"] for w in drift["windows"]] == [False, False, True]  # hour 0 is the reference
    assert drift["windows"][-1]["drifted_columns"] == ["x0"]
    assert [t["name"] for t in drift["triggers"]] == ["drift_columns"]
    assert "Timeline" in (out / "report.html").read_text()


def test_row_windows(run_cli, tmp_path, files):
    log = _log(tmp_path / "log", n_hours=2, rows_per_hour=500)
    code, stdout, _ = run_cli("monitor", "--log", log, "--window", "400rows", "--reference", files[0], "--json")
    windows = json.loads(stdout)["windows"]
    assert [w["n_rows"] for w in windows] == [400, 400, 200]


# -- bad input: one clear error each ------------------------------------------------------------


def test_different_schemas_name_the_columns(run_cli, tmp_path, files):
    other = tmp_path / "other.parquet"
    make_table(500, seed=3).drop(columns=["plan"]).rename(columns={"x1": "x_one"}).to_parquet(other)
    code, _, err = run_cli("monitor", "--reference", files[0], "--current", other)
    assert code == 2
    assert "different columns" in err and "plan" in err and "x1" in err and "x_one" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_empty_window(run_cli, tmp_path, files):
    empty = tmp_path / "empty.csv"
    make_table(10, seed=3).iloc[:0].to_csv(empty, index=False)
    code, _, err = run_cli("monitor", "--reference", files[0], "--current", empty)
    assert code == 2 and "no rows" in err and len(err.strip().splitlines()) == 1


def test_log_without_data_for_the_window(run_cli, tmp_path):
    log = _log(tmp_path / "log", n_hours=2, rows_per_hour=100)
    code, _, err = run_cli("monitor", "--log", log, "--since", "2027-01-01", "--reference", log / "part-000.parquet")
    assert code == 2 and "no rows between 2027-01-01" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty_log"
    empty.mkdir()
    code, _, err = run_cli("monitor", "--log", empty)
    assert code == 2 and "no .parquet files" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--log", "LOG", "--window", "fortnight"], "--window 'fortnight'"),
        (["--reference", "missing.parquet", "--current", "missing.parquet"], "does not exist"),
        (["--reference", "REF"], "give --reference and --current"),
        (["--reference", "REF", "--current", "REF", "--set", "monitor.alpha=2"], "monitor.alpha"),
    ],
)
def test_other_bad_input(run_cli, tmp_path, files, argv, needle):
    log = _log(tmp_path / "log", n_hours=2, rows_per_hour=50)
    argv = [str(log) if a == "LOG" else str(files[0]) if a == "REF" else a for a in argv]
    code, _, err = run_cli("monitor", *argv)
    assert code == 2 and needle in err, err


def test_run_directory_is_read_through_its_eval_predictions(run_cli, tiny_runs, tmp_path):
    """A run without a training reference (trained before references existed, or whose model declares
    no input) is read through the eval/predictions.parquet of `trainwise evaluate`."""
    run_dir = copy_run(tiny_runs.evaluated("good"), tmp_path / "run")
    (run_dir / "model" / "reference.parquet").unlink()
    current = tiny_runs.evaluated("good_seed1") / "eval" / "predictions.parquet"
    code, stdout, err = run_cli("monitor", "--reference", run_dir, "--current", current, "--json")
    assert code == 0, err
    assert json.loads(stdout)["n_reference"] == len(pd.read_parquet(run_dir / "eval" / "predictions.parquet"))


def test_common_columns_compares_eval_predictions_with_a_log(run_cli, tmp_path, files):
    """A run's eval predictions (id, label, pred, prob_*) against a log that also has inputs."""
    rng = np.random.default_rng(0)
    evald = pd.DataFrame({"id": range(800), "prob_yes": rng.beta(2, 5, 800)})
    evald["prob_no"] = 1 - evald["prob_yes"]
    evald["pred"] = np.where(evald["prob_yes"] > 0.5, "yes", "no")
    evald["label"] = np.where(rng.random(800) < evald["prob_yes"], "yes", "no")
    ref = tmp_path / "eval.parquet"
    evald.to_parquet(ref)
    log = evald.drop(columns=["label", "id"]).assign(x0=rng.normal(size=800))
    cur = tmp_path / "log.parquet"
    log.to_parquet(cur)
    code, _, err = run_cli("monitor", "--reference", ref, "--current", cur)
    assert code == 2 and "x0" in err
    code, stdout, _ = run_cli("monitor", "--reference", ref, "--current", cur, "--common-columns", "--json")
    result = json.loads(stdout)
    assert code == 0 and result["dropped_columns"] == ["id", "x0"]
    assert result["prediction_drift"] is False and result["performance"]["estimated"]["calibrated_on_labels"]


def test_the_in_memory_log_path_keeps_the_common_columns_flag(run_cli, tmp_path):
    """With --labels the log is read into memory; a column the reference lacks is still an error unless
    --common-columns is given (the flag was once shadowed by an import of the same name)."""
    rng = np.random.default_rng(0)
    n = 600
    probs = rng.beta(2, 5, n)
    ref = tmp_path / "ref.parquet"
    pd.DataFrame({"prob_yes": probs, "prob_no": 1 - probs, "label": np.where(probs > 0.3, "yes", "no")}).to_parquet(ref)
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    log = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2026-12-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "request_id": [f"r{i}" for i in range(n)],
            "prob_yes": probs,
            "prob_no": 1 - probs,
            "x0": rng.normal(size=n),
        }
    )
    log.to_parquet(log_dir / "part-0.parquet", index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": log["request_id"], "label": np.where(probs > 0.3, "yes", "no")}).to_csv(
        labels, index=False
    )
    argv = ["monitor", "--log", log_dir, "--reference", ref, "--labels", labels, "--window", "1h"]
    code, _, err = run_cli(*argv)
    assert code == 2 and "x0" in err, err
    code, stdout, err = run_cli(*argv, "--common-columns", "--json")
    assert code == 0, err
    assert "x0" in json.loads(stdout)["dropped_columns"]
