"""Shared fixtures: small synthetic tables and a CLI runner for the monitor verb."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainwise import cli


def make_table(n_rows: int, seed: int, shift_sd: float = 0.0, shifted: str = "x0") -> pd.DataFrame:
    """4 numeric columns (normal, integer, skewed) and 2 categorical ones; `shifted` moves by shift_sd SDs."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x0": rng.normal(10.0, 2.0, n_rows),
            "x1": rng.normal(0.0, 1.0, n_rows),
            "age": rng.integers(18, 80, n_rows),
            "income": rng.lognormal(10.0, 0.5, n_rows),
            "region": rng.choice(["north", "south", "east", "west"], n_rows, p=[0.4, 0.3, 0.2, 0.1]),
            "plan": rng.choice(["basic", "pro"], n_rows, p=[0.7, 0.3]),
        }
    )
    if shift_sd:
        frame[shifted] = frame[shifted] + shift_sd * frame[shifted].std()
    return frame


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `trainwise ...` through cli.main; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# -- real runs, a registry and a serving log, for the tests that join serve and monitor ---------

TAB_OVERRIDES = [
    "workload.name=tabular",
    "model.n_layers=1",
    "model.d_model=16",
    "train.steps=40",
    "train.micro_batch_size=64",
    "train.global_batch_size=64",
    "train.lr=1e-2",
    "log.progress=false",
    "log.mlflow=false",
    "train.threads=1",
]


@pytest.fixture(scope="session")
def tab_run(tmp_path_factory):
    """A small tabular run, trained for real (its model/ holds the training reference)."""
    from trainwise.config import load_config
    from trainwise.train.loop import train

    return train(load_config(None, TAB_OVERRIDES), tmp_path_factory.mktemp("monitor-runs") / "tab").run_dir


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory):
    """An initialised, empty MLflow sqlite database (creating the schema takes seconds), copied per module."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture(scope="module")
def store(tmp_path_factory, empty_store_db):
    """A fresh sqlite tracking store for the module, selected through $MLFLOW_TRACKING_URI."""
    import shutil

    root = tmp_path_factory.mktemp("store")
    shutil.copy(empty_store_db, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("TRAINWISE_ACTOR", "tester")
    yield uri
    mp.undo()
