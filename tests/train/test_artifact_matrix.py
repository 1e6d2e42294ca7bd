"""One model artifact, loadable by every stage, whatever the run trained with.

The matrix: memory.ac {none, full, selective, every-n} x precision {fp32, bf16-mixed,
fp8-tensorwise} x strategy {single, ddp, fsdp2 on 2 gloo ranks} = 36 cells of the built-in tabular
MLP, plus the 27 activation-checkpointed cells of a user's GRU sequence model (workload.name =
entry, tests/artifact_models.py). Each cell trains 3 steps; rank 0 writes the in-process model's test
predictions (tests/train/artifact_worker.py: one process or one torchrun group per strategy trains
all its cells). Then ONE fresh process loads every artifact through `trainwise.rundir.load_model`
(tests/train/artifact_loader.py) and predicts again; `trainwise evaluate` and `trainwise compare`
run on some of the runs as a user would call them.

Tolerances, on the predicted class probabilities (softmax of the logits, in [0, 1]):

- fp32: exact. The loaded model runs the same kernels on the same fp32 weights as the trained one
  (the same thread count, the same batches), so any difference is a wrong artifact.
- bf16-mixed: the trained model's forward runs its matmuls under bf16 autocast, the artifact in
  fp32. bf16 keeps 8 significant bits, a relative rounding error of at most 2^-9 per value; these
  models round each matmul's inputs and output, about 8 roundings in series from input to logits,
  so logits may differ by ~8 * 2^-9 = 2^-6 relative, and a probability moves by at most half of a
  logit difference (the slope of the softmax). Allowed: 2^-6 (observed ~0.003).
- fp8-tensorwise: the converted Linear layers round both operands to float8 e4m3 (4 significant
  bits, at most 2^-4 relative per value), the rest runs in bf16. Allowed: 2^-4, one e4m3 rounding
  step at full size (observed ~0.02: the errors of a dot product partly cancel).
An untrained model of the same architecture lies far outside both (checked: > 4x the tolerance),
so the tolerance cannot hide a wrong or partly loaded artifact.

Where the loaded model can redo exactly what training computed, it must match exactly: the
artifact with its FP8 layers converted again and its forward under the run's autocast
("replayed") equals the in-process predictions bit for bit for one process and DDP. Under FSDP2
the trained model gathers its parameters in bf16 (LayerNorm gains, FP8 scales see bf16-rounded
weights), so there the replay is held to the tolerances above.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.train.artifact_worker import COMMON, MODELS, cell_name, cells
from trainwise.cli import main

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ("single", "ddp", "fsdp2")
TOLERANCE = {"fp32": 0.0, "bf16-mixed": 2**-6, "fp8-tensorwise": 2**-4}
TIMEOUT_S = 600


def _env() -> dict:
    # the user's model is imported by name (tests.artifact_models) in every fresh process
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)


def _train_strategy(out: Path, strategy: str) -> None:
    worker = ["-m", "tests.train.artifact_worker", str(out), strategy]
    if strategy == "single":
        cmd = [sys.executable, *worker]
    else:
        from trainwise.train.parallel import free_port

        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}",
            *worker,
        ]
    done = _run(cmd)
    assert done.returncode == 0, f"{strategy}: {done.stderr[-3000:]}"


def all_cells() -> list[tuple[str, str, str, str]]:
    return [(s, m, ac, p) for s in STRATEGIES for m, ac, p in cells()]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    for strategy in STRATEGIES:
        _train_strategy(out, strategy)
    dirs = [str(out / s / cell_name(m, ac, p)) for s, m, ac, p in all_cells()]
    done = _run([sys.executable, "-m", "tests.train.artifact_loader", *dirs])  # one fresh process loads all
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _probs(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_parquet(path)
    return frame, frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(copy=True)


def _max_diff(a: Path, b: Path) -> float:
    fa, pa = _probs(a)
    fb, pb = _probs(b)
    assert fa["id"].tolist() == fb["id"].tolist()
    return float(np.abs(pa - pb).max())


@pytest.mark.slow
def test_the_matrix_covers_every_cell_and_fp8_really_converts(matrix):
    from trainwise.rundir import spec_shapes

    assert len({(s, ac, p) for s, m, ac, p in all_cells() if m == "tabular"}) == 36
    for s, m, ac, p in all_cells():
        run = matrix / s / cell_name(m, ac, p) / "run"
        summary = json.loads((run / "summary.json").read_text())
        assert (summary["status"], summary["ac"], summary["precision"], summary["strategy"]) == ("completed", ac, p, s)
        env = json.loads((run / "env.json").read_text())
        assert bool(env["fp8_layers"]) == (p == "fp8-tensorwise"), (s, m, ac, p, env["fp8_layers"])
        model_json = json.loads((run / "model" / "model.json").read_text())
        from safetensors import safe_open

        with safe_open(run / "model" / "weights.safetensors", "pt") as f:
            saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert saved == spec_shapes(model_json["spec"]), (s, m, ac, p)  # plain names, full (unsharded) shapes


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_loaded_artifacts_predict_what_the_trained_model_did(matrix, strategy):
    failures = []
    for s, m, ac, p in all_cells():
        if s != strategy:
            continue
        cell = matrix / s / cell_name(m, ac, p)
        diff = _max_diff(cell / "in_process.parquet", cell / "loaded.parquet")
        wrong = _max_diff(cell / "in_process.parquet", cell / "untrained.parquet")
        if diff > TOLERANCE[p]:
            failures.append(f"{cell.name}: max |prob difference| {diff:.3g} > {TOLERANCE[p]:.3g}")
        if p != "fp32" and wrong <= 4 * TOLERANCE[p]:
            failures.append(
                f"{cell.name}: an untrained model is only {wrong:.3g} away; the tolerance could not catch a wrong "
                "artifact"
            )
        if p == "fp32":
            torch.testing.assert_close(
                _probs(cell / "loaded.parquet")[1], _probs(cell / "in_process.parquet")[1], atol=0, rtol=0
            )
    assert not failures, "\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_artifacts_replayed_in_the_training_precision_match(matrix, strategy):
    failures = []
    for s, m, ac, p in all_cells():
        if s != strategy or p == "fp32":
            continue
        cell = matrix / s / cell_name(m, ac, p)
        env = json.loads((cell / "run" / "env.json").read_text())
        assert json.loads((cell / "loaded.json").read_text())["replay_fp8_layers"] == env["fp8_layers"]
        allowed = TOLERANCE[p] if s == "fsdp2" else 0.0
        diff = _max_diff(cell / "in_process.parquet", cell / "replayed.parquet")
        if diff > allowed:
            failures.append(f"{cell.name}: replayed in {p}, max |prob difference| {diff:.3g} > {allowed:.3g}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_evaluate_and_compare_accept_checkpointed_and_sharded_runs(matrix):
    """As a user calls them: fresh processes, exit 0, 1 or 3 (pass, fail, inconclusive), never 2 (refused)."""
    fsdp2_user = matrix / "fsdp2" / "sequence-full-fp32" / "run"  # the user's GRU model, AC full, FSDP2
    done = _run([sys.executable, "-m", "trainwise.cli", "evaluate", str(fsdp2_user)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert _max_diff(fsdp2_user / "eval" / "predictions.parquet", fsdp2_user.parent / "in_process.parquet") == 0.0

    baseline, checkpointed = (matrix / "single" / f"tabular-{ac}-fp32" / "run" for ac in ("none", "full"))
    done = _run([sys.executable, "-m", "trainwise.cli", "compare", str(baseline), str(checkpointed)])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]  # AC changes no number: the gate passes
    assert "gate: PASSED" in done.stdout

    sharded = matrix / "fsdp2" / "tabular-selective-bf16-mixed" / "run"
    done = _run([sys.executable, "-m", "trainwise.cli", "compare", str(baseline), str(sharded)])
    assert done.returncode in (0, 1, 3), done.stderr[-2000:]  # pass, fail or inconclusive: an answer, not a refusal (2)
    assert (sharded / "eval" / "predictions.parquet").is_file()  # compare evaluated the run first


@pytest.mark.parametrize("model", sorted(MODELS))
def test_evaluate_accepts_a_run_trained_with_full_activation_checkpointing(model, tmp_path):
    """The user's report: a run trained with memory.ac = full saved its weights as
    `blocks.0.block.*` (the checkpoint wrapper's level), and `trainwise evaluate` refused it (exit 2)."""
    run = tmp_path / "run"
    overrides = [*MODELS[model], *COMMON, "memory.ac=full", "eval.slices=[]"]
    assert (
        main(["train", "configs/tabular.toml", *[a for o in overrides for a in ("--set", o)], "--run-dir", str(run)])
        == 0
    )
    assert main(["evaluate", str(run), "--no-robustness", "--bootstrap", "10"]) == 0
