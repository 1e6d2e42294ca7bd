"""MLflow's INFO lines stay out of trainwise's output (tracking.quiet_mlflow_logs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # two fresh stores: ~100 schema migrations each
def test_a_fresh_store_is_created_without_info_lines(tmp_path):
    """A new sqlite store runs MLflow's schema migrations, which log INFO lines unless silenced."""
    code = f"from trainwise.registry.store import get_client; get_client('sqlite:///{tmp_path}/mlflow.db'); print('ok')"
    out = run_python(code, tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert " INFO " not in out.stderr and "Creating initial MLflow database tables" not in out.stderr, out.stderr
    # a user who asks MLflow for its INFO lines still gets them
    loud = run_python(code.replace("mlflow.db", "loud.db"), tmp_path, MLFLOW_LOGGING_LEVEL="INFO")
    assert "Creating initial MLflow database tables" in loud.stderr, loud.stderr
