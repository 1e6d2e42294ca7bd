"""Issue 16, items 13-14: references whose rows are partly labelled (a prediction log's normal
state), and accuracy-drop triggers on windows too small, or too thinly labelled, to judge.

The frames are scored by a real scikit-learn classifier on the Fair data (tests/monitor/test_performance.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.monitor.test_performance import _scored_fair
from trainwise.config import load_config
from trainwise.monitor.drift import DriftMonitor
from trainwise.monitor.triggers import evaluate_triggers

POLICY = ["monitor.trigger_est_accuracy_drop=0.05", "monitor.trigger_realised_drop=0.05", "monitor.multivariate=false"]


def _unlabel(frame: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    out = frame.copy()
    out["label"] = out["label"].astype(object)
    out.loc[np.random.default_rng(seed).random(len(out)) < share, "label"] = None
    return out


def test_reference_with_unlabelled_rows_is_calibrated_on_its_labelled_rows(tmp_path, run_cli):
    reference, current = _scored_fair(0)
    partly = _unlabel(reference, 0.6)
    labelled_only = partly[partly["label"].notna()].reset_index(drop=True)
    hidden = current.drop(columns=["label"])
    perf = DriftMonitor(multivariate=False).fit(partly).check(hidden)["performance"]  # IndexError before the fix
    # the label-free estimate is the one a reference of the labelled rows alone gives
    alone = DriftMonitor(multivariate=False).fit(labelled_only).check(hidden)["performance"]
    assert perf["estimated"]["calibrated_on_labels"] is True
    assert perf["estimated"]["accuracy"] == pytest.approx(alone["estimated"]["accuracy"])
    assert perf["estimated_accuracy_drop"] == pytest.approx(alone["estimated_accuracy_drop"])
    # and through the command line: a file written as a prediction log leaves it, exit 0, no traceback
    partly.to_parquet(tmp_path / "ref.parquet")
    _unlabel(current, 0.5, seed=1).to_parquet(tmp_path / "cur.parquet")
    code, out, err = run_cli(
        "monitor",
        "--reference",
        tmp_path / "ref.parquet",
        "--current",
        tmp_path / "cur.parquet",
        "--out",
        tmp_path / "out",
        "--set",
        "monitor.multivariate=false",
    )
    assert code in (0, 1) and "Traceback" not in err, err  # 1 = drift found; never a crash


def _worse(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with every label replaced by a class the model did not predict: accuracy 0."""
    out = frame.copy()
    classes = sorted(out["label"].astype(str).unique())
    out["label"] = [next(c for c in classes if c != str(p)) for p in out["pred"]]
    return out


def _uncertain(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose predicted probabilities are near 0.5: the label-free estimate of their accuracy is low."""
    probs = [c for c in frame.columns if c.startswith("prob_")]
    out = frame.copy()
    out[probs] = 0.5 + (out[probs] - 0.5) * 0.02
    return out


def _fired(reference: pd.DataFrame, window: pd.DataFrame) -> list[str]:
    policy = load_config(None, POLICY).monitor
    result = DriftMonitor(multivariate=False, min_window_rows=policy.min_window_rows).fit(reference).check(window)
    return [t.name for t in evaluate_triggers(result, policy)]


def test_accuracy_triggers_need_a_window_large_enough_to_judge():
    reference, current = _scored_fair(0)
    small = _worse(_uncertain(current.iloc[:10]))  # 10 rows < monitor.min_window_rows = 30: too small to judge
    assert _fired(reference, small) == []
    large = _worse(_uncertain(current.iloc[:300]))  # the same kind of rows, enough of them: both drops are shown
    assert set(_fired(reference, large)) == {"est_accuracy_drop", "realised_drop"}


def test_realised_drop_needs_enough_labelled_rows():
    reference, current = _scored_fair(1)
    window = _worse(current.iloc[:300])
    window["label"] = window["label"].astype(object)
    window.loc[window.index[5:], "label"] = None  # a large window, but only 5 labels have arrived
    assert "realised_drop" not in _fired(reference, window)
    window = _worse(current.iloc[:300])  # all 300 labelled: the drop is shown
    assert "realised_drop" in _fired(reference, window)


def test_a_drop_inside_its_own_noise_does_not_fire():
    reference, current = _scored_fair(0)  # reference accuracy 0.708 on 1,591 rows
    right = current[current["pred"] == current["label"]].iloc[:25]
    wrong = current[current["pred"] != current["label"]].iloc[:15]
    window = pd.concat([right, wrong]).reset_index(drop=True)  # 40 rows (judged), accuracy 0.625
    policy = load_config(None, POLICY).monitor
    result = DriftMonitor(multivariate=False).fit(reference).check(window)
    drop = result["performance"]["realised"]["accuracy_drop"]
    assert drop["value"] > policy.trigger_realised_drop and drop["ci_low"] < 0  # above the threshold, yet not shown
    assert "realised_drop" not in [t.name for t in evaluate_triggers(result, policy)]
