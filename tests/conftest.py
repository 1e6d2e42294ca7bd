"""Session-wide isolation: MLflow logs and the `trainwise info` cache go to temporary places."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    mp.setenv("TRAINWISE_CACHE", str(root / "cache"))
    yield root
    mp.undo()
