"""The training path runs on the lent GPU machine's image (issue 17): `trainwise info`, `train`
with tracking off, `estimate` and `numerics` import nothing that image lacks (MLflow, FastAPI and
the serving stack, DuckDB, cleanlab: tests/device_image.py). The bench's worker processes are
checked the same way by tests/test_gpu_proof.py's dry run."""

from __future__ import annotations

import subprocess
import sys

from tests.device_image import MISSING_ON_DEVICE, ROOT, device_image_env
from tests.helpers import ONE_BLOCK_LM, set_args

TINY = set_args(*ONE_BLOCK_LM, "log.progress=false", "train.eval_batches=1")


def run_as_on_device(tmp_path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=device_image_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_info_train_estimate_numerics_run_without_what_the_device_image_lacks(tmp_path):
    run_dir, numerics_dir = tmp_path / "run", tmp_path / "numerics"
    code = f"""
import contextlib, io, sys
from trainwise.cli import main
tiny = {TINY!r}
with contextlib.redirect_stdout(io.StringIO()):
    codes = [main(["info", "--device", "cpu", "--json"]),
             main(["train", "configs/lm-tiny.toml", "--run-dir", {str(run_dir)!r}, *tiny,
                   "--set", "train.steps=2", "--set", "log.mlflow=false"]),
             main(["estimate", "configs/lm-tiny.toml", *tiny, "--json"]),
             main(["numerics", "configs/lm-tiny.toml", "--steps", "1", "--out", {str(numerics_dir)!r}, *tiny])]
print("CODES", codes)
print("LOADED", sorted({{m.split(".")[0] for m in sys.modules}} & set({MISSING_ON_DEVICE!r})))
"""
    proc = run_as_on_device(tmp_path, code)
    assert "CODES [0, 0, 0, 0]" in proc.stdout, proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout
    assert (run_dir / "summary.json").is_file() and (numerics_dir / "numerics.json").is_file()


def test_the_device_image_really_lacks_them(tmp_path):
    """The check above can fail: under the device image, importing MLflow fails."""
    proc = run_as_on_device(tmp_path, "import mlflow")
    assert proc.returncode != 0 and "No module named 'mlflow'" in proc.stderr


def test_tracking_on_without_mlflow_is_one_clear_line_before_training(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainwise.cli",
            "train",
            "configs/lm-tiny.toml",
            "--run-dir",
            str(run_dir),
            *TINY,
            "--set",
            "train.steps=2",
            "--set",
            "log.mlflow=true",
        ],
        env=device_image_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "trainwise train: error: log.mlflow = true, but MLflow is not installed here: pip install mlflow, or --set "
        "log.mlflow=false (the run directory holds everything MLflow would get)"
    ]
    assert not run_dir.exists()  # refused before training: nothing trained for hours and then lost its tracking
