"""Model card contents, and the `trainwise ui` command line."""

from __future__ import annotations

from tests.registry.rundirs import fake_gate, make_run


def test_card(store, tmp_path, workload, cli, monkeypatch):
    monkeypatch.setattr("trainwise.registry.gate.run_gate", fake_gate)
    run_dir, _ = make_run(tmp_path, "card-run", workload, 20)
    assert cli("register", run_dir, "--name", "carded")[0] == 0
    assert cli("promote", "carded", "1", "--reason", "first")[0] == 0
    code, out, err = cli("card", "carded", "1", "--out", tmp_path / "card.md")
    assert code == 0, err
    card = (tmp_path / "card.md").read_text()
    for heading in (
        "## Intended use",
        "## Training data",
        "## Precision and efficiency",
        "## Metrics",
        "### Calibration",
        "### Slices",
        "## Gate history",
        "## Known limitations",
    ):
        assert heading in card
    env_fp = __import__("json").loads((run_dir / "env.json").read_text())["data_fingerprints"]["train"]
    assert env_fp in card and "Aliases held now: champion" in card
    assert "| education.college graduate |" in card and "| brier |" in card
    assert "| promote | champion | - | 1 | no-baseline | first |" in card
    assert "classes no, yes" in card


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
