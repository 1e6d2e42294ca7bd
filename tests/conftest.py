"""Session-wide isolation (MLflow logs and the `trainwise info` cache go to temporary places), and
the real run directories seam tests share (tests/realruns.py)."""

from __future__ import annotations

import pytest

from tests.realruns import TinyRuns


@pytest.fixture(scope="session", autouse=True)
def isolated_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    mp.setenv("TRAINWISE_CACHE", str(root / "cache"))
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    """Real tabular runs by name (tests/realruns.py RECIPES), trained and evaluated once per session on first use."""
    return TinyRuns(tmp_path_factory.mktemp("tiny-runs"))
