"""Fixtures: one sqlite tracking store per test module, the module's own copies of the shared real
runs, an in-process CLI."""

from __future__ import annotations

import shutil

import pytest

from tests.realruns import copy_run


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
def runs(tiny_runs, tmp_path_factory):
    """`runs(key)`: this module's copy of a shared real run (trained, then evaluated; tests/realruns.py).
    A copy, because registering writes mlflow.json into the run directory, and every module has its
    own tracking store."""
    root = tmp_path_factory.mktemp("runs")

    def get(key: str):
        if not (root / key).is_dir():
            copy_run(tiny_runs.evaluated(key), root / key)
        return root / key

    return get


@pytest.fixture()
def cli(capsys):
    """Run `trainwise ...` in process; returns (exit code, stdout, stderr)."""
    import trainwise.cli

    def run(*argv):
        code = trainwise.cli.main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
