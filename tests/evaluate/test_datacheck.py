"""Data checks find planted leakage, planted label errors and personal data; bad input is one clear error."""

import json

import numpy as np
import pandas as pd
import pytest

from trainwise.evaluate.datacheck import check_data, parse_fail_on, table_fingerprint
from trainwise.evaluate.pii import find_pii, luhn_valid
from trainwise.evaluate.tablechecks import duplicates, leakage


def blobs(n: int, seed: int) -> pd.DataFrame:
    """Two well separated classes in 4 numeric columns plus a categorical one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 4)) + 3.0 * y[:, None]
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    df["colour"] = rng.choice(["red", "green", "blue"], n)
    df["label"] = np.where(y == 1, "pos", "neg")
    return df


def test_planted_leakage_is_found(tmp_path):
    train, test = blobs(600, 0), blobs(200, 1)
    leaked = test.iloc[:15].copy()
    near = test.iloc[15:20].copy()
    near["colour"] = near["colour"].str.upper() + "  "  # the same row, differently written
    near["x0"] = near["x0"] * (1 + 1e-6)
    pd.concat([train, leaked, near]).to_csv(tmp_path / "train.csv", index=False)
    test.to_parquet(tmp_path / "test.parquet")
    r = check_data(tmp_path / "train.csv", against=tmp_path / "test.parquet", target="label", fail_on="leakage")
    leak = r["findings"]["leakage"]
    assert (leak["exact"], leak["near"]) == (15, 5)
    assert set(leak["examples"]) == set(range(20))
    assert not r["passed"] and r["failed"][0].startswith("leakage")
    clean = check_data(tmp_path / "test.parquet", against=tmp_path / "test.parquet", fail_on="pii")
    assert clean["findings"]["leakage"]["exact"] == 200 and clean["passed"]


def test_duplicates_within_a_table():
    df = blobs(100, 2)
    doubled = pd.concat([df, df.iloc[:7]], ignore_index=True)
    assert duplicates(doubled)["exact"] == 7 and duplicates(df)["value"] == 0
    assert leakage(df, blobs(50, 3))["value"] == 0


def test_planted_label_errors_are_found(tmp_path):
    df = blobs(800, 4)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(df), 40, replace=False)
    df.loc[flipped, "label"] = np.where(df.loc[flipped, "label"] == "pos", "neg", "pos")
    df.to_csv(tmp_path / "t.csv", index=False)
    r = check_data(tmp_path / "t.csv", target="label")
    issues = r["findings"]["label_issues"]
    found = set(issues["all_rows"])
    recall = len(found & set(flipped)) / len(flipped)
    precision = len(found & set(flipped)) / max(len(found), 1)
    assert recall >= 0.8 and precision >= 0.7, (recall, precision)
    assert issues["found"]


def test_email_column_is_flagged_and_others_are_not():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(
        {
            "contact": [f"user{i}@example.{'com' if i % 2 else 'org'}" for i in range(n)],
            "note": rng.choice(["ok", "late payment", "call back"], n),
            "amount": rng.normal(size=n),
            "card": ["4111 1111 1111 1111", "5500 0000 0000 0004"] * (n // 2),
            "customer_id": np.arange(10_000, 10_000 + n),
        }
    )
    pii = find_pii(df)
    assert pii["contact"]["pattern"] == "email" and pii["contact"]["share"] == 1.0
    assert pii["card"]["pattern"] == "card_number"
    assert set(pii) == {"contact", "card"}
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_fingerprint_is_content_not_format(tmp_path):
    df = blobs(50, 5)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    a = check_data(tmp_path / "a.csv")["fingerprints"]["file"]
    assert (
        a
        == check_data(tmp_path / "a.parquet")["fingerprints"]["file"]
        == table_fingerprint(pd.read_csv(tmp_path / "a.csv"))
    )
    assert table_fingerprint(df.iloc[:-1]) != a


def test_config_check_reports_split_fingerprints(tmp_path):
    from trainwise.config import config_to_toml, load_config
    from trainwise.workloads.base import fingerprint_split, get_workload_fn

    cfg = load_config(None, ["workload.name=vision"])
    (tmp_path / "v.toml").write_text(config_to_toml(cfg))
    r = check_data(tmp_path / "v.toml")
    w = get_workload_fn("vision")(cfg)
    assert r["fingerprints"]["test"] == fingerprint_split(w.test)
    assert r["findings"]["leakage"]["value"] == 0  # scikit-learn's digits have no identical images across splits
    assert r["findings"]["imbalance"]["majority_to_minority"] < 1.5


def test_fail_on_parsing():
    assert parse_fail_on("leakage, label_issues>0.05") == [("leakage", None), ("label_issues", 0.05)]


def test_data_check_cli(tmp_path, cli_main, capsys):
    df = blobs(100, 6)
    df["email"] = [f"a{i}@b.io" for i in range(len(df))]
    df.to_csv(tmp_path / "t.csv", index=False)
    assert (
        cli_main(["data", "check", str(tmp_path / "t.csv"), "--fail-on", "pii", "--json", str(tmp_path / "r.json")])
        == 1
    )
    out = capsys.readouterr().out
    assert "email (email, 100%)" in out and "FAILED: pii" in out
    assert json.loads((tmp_path / "r.json").read_text())["findings"]["pii"]["columns"]["email"]["pattern"] == "email"


def test_a_check_asked_for_that_cannot_run_is_an_error(tmp_path, cli_main, capsys):
    blobs(60, 6).to_csv(tmp_path / "t.csv", index=False)
    for rule, needs in (
        ("leakage", "--against OTHER"),
        ("label_issues>0.1", "--target COLUMN"),
        ("imbalance", "--target COLUMN"),
    ):
        assert (
            cli_main(["data", "check", str(tmp_path / "t.csv"), "--fail-on", rule, "--json", str(tmp_path / "r.json")])
            == 2
        )
        err = capsys.readouterr().err
        assert (
            f"--fail-on {rule.split('>')[0]}" in err
            and needs in err
            and len(err.strip().splitlines()) == 1
            and "Traceback" not in err
        )
        assert not (tmp_path / "r.json").exists()  # refused before anything was written
    # a CONFIG of tensors has no raw columns to look for personal data in: --fail-on pii cannot run there
    from trainwise.config import config_to_toml, load_config

    (tmp_path / "vision.toml").write_text(config_to_toml(load_config(None, ["workload.name=vision"])))
    assert cli_main(["data", "check", str(tmp_path / "vision.toml"), "--fail-on", "pii"]) == 2
    err = capsys.readouterr().err
    assert "--fail-on pii: the pii check cannot run" in err and "holds tensors" in err


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("model.bin", b"\x00\x01", "unknown extension '.bin'"),
        ("broken.parquet", b"not parquet at all", "could not be read as a table"),
    ],
)
def test_data_check_bad_input(tmp_path, cli_main, capsys, name, content, expected):
    (tmp_path / name).write_bytes(content)
    assert cli_main(["data", "check", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_data_check_unknown_rule_and_target(tmp_path, cli_main, capsys):
    blobs(30, 7).to_csv(tmp_path / "t.csv", index=False)
    assert cli_main(["data", "check", str(tmp_path / "t.csv"), "--fail-on", "leaks"]) == 2
    assert "unknown finding 'leaks'" in capsys.readouterr().err
    assert cli_main(["data", "check", str(tmp_path / "t.csv"), "--target", "y"]) == 2
    assert "--target 'y' is not a column" in capsys.readouterr().err
