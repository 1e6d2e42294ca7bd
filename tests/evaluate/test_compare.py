"""Paired comparison and gates: equal models pass, planted decay fails, bad input is one clear error."""

import json

import numpy as np
import pandas as pd
import pytest

from trainwise.errors import ConfigError, DataError
from trainwise.evaluate.compare import compare_predictions
from trainwise.evaluate.gate import Gate, Rule, default_gate, load_gate


def degrade(df: pd.DataFrame, share: float, seed: int = 0, mask=None) -> pd.DataFrame:
    """Flip a share of the correct predictions (within `mask`) to a wrong class."""
    out = df.copy()
    prob_cols = [c for c in df.columns if c.startswith("prob_")]
    right = (df["pred"] == df["label"]).to_numpy() & (True if mask is None else mask)
    rng = np.random.default_rng(seed)
    flip = np.flatnonzero(right)[rng.uniform(size=right.sum()) < share]
    p = out[prob_cols].to_numpy().copy()
    p[flip] = p[flip][:, ::-1]  # reverse the class order: the top class becomes the bottom one
    out[prob_cols] = p
    out["pred"] = np.array([c[5:] for c in prob_cols])[p.argmax(1)]
    return out


def test_same_predictions_pass_with_zero_deltas(preds):
    df = preds(2000, 3, seed=0)
    c = compare_predictions(df, df.sample(frac=1.0, random_state=0), "classification", n_boot=200)
    assert c.passed and c.verdict == "pass" and c.failures == [] and c.settle is None
    # Agresti-Min keeps a width with no discordant pair: 2,000 agreeing examples bound the change by ~0.001
    lo, hi = c.deltas["accuracy"]["ci95"]
    assert c.deltas["accuracy"]["delta"] == 0 and -0.0011 < lo < 0 < hi < 0.0011
    assert c.deltas["log_loss"]["ci95"] == [0, 0] and c.deltas["ece"]["ci95"] == [0, 0]
    assert c.tests["mcnemar"]["p_value"] == 1.0
    d = c.to_dict()
    assert (
        d["passed"] is True
        and d["verdict"] == "pass"
        and {r["status"] for r in d["rules"]} <= {"pass", "not applicable"}
    )


def test_planted_accuracy_drop_fails_the_default_gate(preds):
    df = preds(4000, 2, seed=1)
    cand = degrade(df, 0.06, seed=1)  # about 5 points of accuracy lost
    c = compare_predictions(df, cand, "classification", n_boot=300)
    assert not c.passed and c.verdict == "fail"
    assert any(f.startswith("accuracy dropped") for f in c.failures)
    rule = c.rules[0]
    assert rule["status"] == "fail" and rule["lower_bound"] > 0.005 and rule["upper_bound"] > rule["lower_bound"]
    assert c.deltas["accuracy"]["delta"] < -0.03
    assert c.tests["mcnemar"]["p_value"] < 1e-6
    assert c.tests["delong"]["delta"] < 0


def test_slice_rule_catches_decay_in_one_slice(preds):
    df = preds(3000, 2, seed=2)
    cand = degrade(df, 0.5, seed=2, mask=(df["region"] == "south").to_numpy())
    gate = Gate([Rule("accuracy", 0.02, scope="slices", min_count=100)])
    c = compare_predictions(df, cand, "classification", gate, n_boot=300)
    assert not c.passed
    assert len(c.failures) == 1 and "region=south" in c.failures[0] and "region=north" not in c.failures[0]
    south = next(s for s in c.slices["region"] if s["value"] == "south")
    assert south["deltas"]["accuracy"]["delta"] < -0.2


def test_lm_loss_rule(preds):
    rng = np.random.default_rng(0)
    n = 2000
    base = pd.DataFrame(
        {
            "id": np.arange(n),
            "loss": rng.gamma(4, 0.4, n),
            "correct": rng.uniform(0.3, 0.7, n),
            "group": np.arange(n) % 4,
        }
    )
    same = base.assign(loss=base["loss"] + rng.normal(0, 0.01, n))
    worse = base.assign(loss=base["loss"] * 1.05)
    same_c = compare_predictions(base, same, "lm", n_boot=300)
    assert same_c.verdict == "pass" and same_c.deltas["loss"]["interval"] == "paired-t"
    c = compare_predictions(base, worse, n_boot=300)
    assert c.task == "lm" and c.verdict == "fail"
    assert any(f.startswith("loss rose") for f in c.failures)
    assert c.tests["paired_t_loss"]["p_value"] < 1e-6 and c.to_dict()["tests"]["paired_t_loss"]["statistic"] > 0
    assert c.deltas["bits_per_byte"]["delta"] == pytest.approx(c.deltas["loss"]["delta"] / np.log(2))


def test_different_example_ids_are_one_clear_error(preds):
    df = preds(100, 2)
    with pytest.raises(DataError, match="cover different examples: 10 ids only in the baseline"):
        compare_predictions(df, df.iloc[10:], "classification")


def test_different_labels_are_refused(preds):
    df = preds(100, 2)
    other = df.assign(label=np.where(df["label"] == "c0", "c1", "c0"))
    with pytest.raises(DataError, match="disagree on the true label"):
        compare_predictions(df, other)


def test_gate_file_and_unknown_metric(tmp_path):
    good = tmp_path / "gate.toml"
    good.write_text(
        '[[rule]]\nmetric = "f1_macro"\ntolerance = 0.01\n\n[[rule]]\nmetric = "accuracy"\nscope = '
        '"slices"\nmin_count = 50\ntolerance = 0.03\n'
    )
    gate = load_gate(good)
    assert [r.metric for r in gate.rules] == ["f1_macro", "accuracy"] and gate.rules[1].min_count == 50
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nmetric = "acuracy"\ntolerance = 0.01\n')
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'; did you mean accuracy"):
        load_gate(bad)
    bad.write_text('[[rule]]\nmetric = "accuracy"\ntolerance = 0.01\nconfidance = 0.9\n')
    with pytest.raises(ConfigError, match="unknown key.*confidance"):
        load_gate(bad)
    assert len(default_gate().rules) >= 3


def test_compare_cli_exit_codes(preds, tmp_path, cli_main, capsys):
    base = preds(3000, 2, seed=3)
    (tmp_path / "base").mkdir()
    (tmp_path / "worse").mkdir()
    base.to_parquet(tmp_path / "base" / "predictions.parquet")
    degrade(base, 0.08, seed=3).to_parquet(tmp_path / "worse" / "predictions.parquet")
    assert cli_main(["compare", str(tmp_path / "base"), str(tmp_path / "base")]) == 0
    assert "gate: PASSED" in capsys.readouterr().out
    assert cli_main(["compare", str(tmp_path / "base"), str(tmp_path / "worse" / "predictions.parquet"), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert (
        d["passed"] is False and d["verdict"] == "fail" and d["failures"] and d["tests"]["mcnemar"]["p_value"] < 0.001
    )


def test_compare_exit_codes_on_trained_runs(trained_runs, cli_main, capsys):
    """0 pass, 1 fail, 3 inconclusive on run directories from the real trainer (evaluated on their
    test split by `compare` itself)."""
    runs = {k: str(v) for k, v in trained_runs.items()}
    assert cli_main(["compare", runs["seed0"], runs["seed0"], "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "paired comparison on 637 examples (classification, test split)" in out and "gate: PASSED" in out
    assert "[PASS] accuracy drop <= 0.005" in out and "upper <= tolerance 0.005" in out

    assert cli_main(["compare", runs["seed0"], runs["seed1"], "--bootstrap", "200"]) == 3
    out = capsys.readouterr().out
    assert "[INCONCLUSIVE] accuracy drop <= 0.005" in out and "straddle tolerance 0.005" in out
    assert "gate: INCONCLUSIVE (about " in out and "examples (have 637) would settle every inconclusive rule" in out
    assert "McNemar exact" in out and "DeLong" in out

    assert cli_main(["compare", runs["seed0"], runs["lr0"], "--bootstrap", "200", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["verdict"] == "fail" and d["split"] == "test" and d["rules"][0]["lower_bound"] > 0.005
    assert (trained_runs["seed0"] / "eval" / "metrics.json").is_file()


def test_compare_cli_bad_input(preds, tmp_path, cli_main, capsys):
    base = preds(200, 2)
    base.to_parquet(tmp_path / "a.parquet")
    base.iloc[5:].to_parquet(tmp_path / "b.parquet")
    (tmp_path / "gate.toml").write_text('[[rule]]\nmetric = "acc"\ntolerance = 0.01\n')
    (tmp_path / "junk.parquet").write_text("hello")
    cases = [
        (["compare", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")], "cover different examples"),
        (
            [
                "compare",
                str(tmp_path / "a.parquet"),
                str(tmp_path / "a.parquet"),
                "--gate",
                str(tmp_path / "gate.toml"),
            ],
            "unknown metric 'acc'",
        ),
        (["compare", str(tmp_path / "a.parquet"), str(tmp_path / "junk.parquet")], "not a readable predictions table"),
        (["compare", str(tmp_path / "a.parquet"), str(tmp_path / "nowhere")], "neither an evaluation directory"),
    ]
    for argv, message in cases:
        assert cli_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_auc_rule_uses_the_bootstrapped_auc(preds):
    df = preds(1500, 2, seed=8)
    cand = degrade(df, 0.15, seed=8)
    c = compare_predictions(df, cand, "classification", Gate([Rule("roc_auc", 0.01)]), n_boot=200)
    assert not c.passed and c.failures[0].startswith("roc_auc dropped")
    assert c.deltas["roc_auc"]["delta"] == pytest.approx(c.tests["delong"]["delta"])
    assert (
        "roc_auc" not in compare_predictions(df, cand, "classification", n_boot=200).deltas
    )  # default gate: DeLong only
