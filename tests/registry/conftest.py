"""Fixtures: one sqlite tracking store per test module, the tabular workload, an in-process CLI."""

from __future__ import annotations

import shutil

import pytest

from tests.registry.rundirs import build_workload


@pytest.fixture(scope="session")
def empty_store_db(tmp_path_factory):
    """An initialised, empty MLflow sqlite database: creating the schema runs ~100 alembic
    migrations (seconds on a busy 2-core machine), so it is done once and copied per module."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture(scope="module")
def store(tmp_path_factory, empty_store_db):
    """A fresh sqlite tracking store for the module, selected through $MLFLOW_TRACKING_URI."""
    root = tmp_path_factory.mktemp("store")
    shutil.copy(empty_store_db, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("TRAINWISE_ACTOR", "tester")
    yield uri
    mp.undo()


@pytest.fixture(scope="module")
def workload():
    return build_workload()


@pytest.fixture()
def cli(monkeypatch, capsys):
    """Run `trainwise ...` in process; returns (exit code, stdout, stderr)."""
    import trainwise.cli

    def run(*argv):
        code = trainwise.cli.main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
