"""Run trainwise as the lent GPU machine's image has it: without the packages that image lacks.

The device image (the tool library's KINDS.md: torch 2.11 with CUDA, numpy, pandas, scipy,
scikit-learn, statsmodels, pyarrow, safetensors, matplotlib, onnx, onnxruntime, prometheus-client,
httpx, ...) has no MLflow, FastAPI/Starlette/pydantic, uvicorn/httptools, DuckDB or cleanlab, and
nothing can be installed there from a registry; torchao travels as a carried wheel (docs/gpu.md).
`device_image_env(tmp_path)` returns an environment whose Python processes (and every process they
start: bench workers, timing processes) cannot import those packages: a sitecustomize.py on
PYTHONPATH puts a finder first on sys.meta_path that answers "No module named ..." for them.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISSING_ON_DEVICE = (
    "mlflow",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_core",
    "uvicorn",
    "httptools",
    "duckdb",
    "cleanlab",
)

SITECUSTOMIZE = '''
import sys

MISSING = {missing!r}


class DeviceImage:
    """Answers like a machine where these packages are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the device image)", name=name)
        return None


sys.meta_path.insert(0, DeviceImage())
'''


def device_image_env(tmp_path: Path) -> dict:
    site = tmp_path / "device_image_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(missing=MISSING_ON_DEVICE))
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "TRAINWISE_CACHE": str(tmp_path / "cache")}
