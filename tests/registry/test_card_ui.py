"""Model card contents, and the `trainwise ui` command line."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def card(store, runs, tmp_path_factory):
    """`trainwise card` of a real run (trained, then evaluated by `trainwise evaluate`), registered and promoted."""
    from trainwise.cli import main

    out = tmp_path_factory.mktemp("card") / "card.md"
    assert main(["register", str(runs("good")), "--name", "carded"]) == 0
    assert main(["promote", "carded", "1", "--reason", "first"]) == 0
    assert main(["card", "carded", "1", "--out", str(out)]) == 0
    return out.read_text()


def test_card(card, runs):
    for heading in (
        "## Intended use",
        "## Training data",
        "## Precision and efficiency",
        "## Metrics",
        "### Calibration",
        "## Gate history",
        "## Known limitations",
    ):
        assert heading in card
    env_fp = json.loads((runs("good") / "env.json").read_text())["data_fingerprints"]["train"]
    assert env_fp in card and "Aliases held now: champion" in card
    assert "| brier |" in card
    assert "| promote | champion | - | 1 | no-baseline | first |" in card
    assert "classes no, yes" in card


# `trainwise evaluate` writes slices as records per column; the card keys them by value
def test_card_shows_the_slices_of_the_evaluation(card):
    assert "### Slices" in card and "| education.college graduate |" in card


def test_ui_dry_run(cli, store):
    code, out, err = cli("ui", "--port", "5123", "--dry-run")
    assert code == 0
    assert out.split()[1:] == [
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        store,
        "--host",
        "127.0.0.1",
        "--port",
        "5123",
    ]
    code, out, err = cli("ui", "--tracking-uri", "sqlite:////no/such/dir/mlflow.db")
    assert code == 2 and "does not exist" in err
