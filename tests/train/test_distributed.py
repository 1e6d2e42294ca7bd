"""Distributed training: 2 gloo processes started through `trainwise launch` match one process.

The tiny model (d_model 32, 2 blocks, 6 steps) keeps each launch to seconds of compute; most of
the time is process start-up. Global batch 16: one process runs micro-batches of 16, two processes
8 each. (No gradient accumulation here: the step-memory measurement, MemTracker, refuses several
forward calls in its measured step; see the report.)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainwise.cli import main
from trainwise.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "model.d_model=32",
    "model.n_layers=2",
    "train.steps=6",
    "train.threads=1",
    "train.log_every=1",
    "train.checkpoint_every=3",
    "log.progress=false",
    "train.eval_every=3",
    "train.eval_batches=4",
    "train.micro_batch_size=8",
    "train.global_batch_size=16",
    "train.warmup_steps=2",
]
RTOL = 1e-5  # fp32 reductions in another order: the tolerance


def sets(*extra: str) -> list[str]:
    return [a for item in (*SMALL, *extra) for a in ("--set", item)]


def launch(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "trainwise.cli", "launch", "--nproc-per-node", "2", *args]
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def val_losses(run_dir: Path) -> list[float]:
    return [
        row["val_loss"]
        for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "val_loss" in row
    ]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "weights.safetensors")


def assert_same_trajectory(run_dir: Path, single: Path) -> None:
    """The run's losses and validation losses (rtol RTOL) and final weights are the one-process run's."""
    torch.testing.assert_close(losses(run_dir), losses(single), rtol=RTOL, atol=0)
    torch.testing.assert_close(val_losses(run_dir), val_losses(single), rtol=RTOL, atol=0)
    for k, v in weights(single).items():
        torch.testing.assert_close(weights(run_dir)[k], v, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The one-process reference trajectory (strategy 'single', in process). Validation batches are
    micro-batch-sized: 2 x 16 here and 4 x 8 below are the same 32 examples."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    assert (
        main(
            [
                "train",
                "configs/lm-tiny.toml",
                *sets("train.micro_batch_size=16", "train.eval_batches=2"),
                "--run-dir",
                str(run_dir),
            ]
        )
        == 0
    )
    return run_dir


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    launch(["configs/lm-tiny.toml", *sets("parallel.strategy=ddp"), "--run-dir", str(run_dir)])
    return run_dir


@pytest.mark.slow
def test_ddp_matches_single_process(single, ddp):
    assert len(losses(ddp)) == 6
    assert_same_trajectory(ddp, single)
    summary = json.loads((ddp / "summary.json").read_text())
    assert (summary["strategy"], summary["world_size"]) == ("ddp", 2)


@pytest.mark.slow
def test_fsdp2_matches_and_its_dcp_checkpoint_resumes_at_one_rank(single, tmp_path):
    """FSDP2 at 2 ranks for 3 steps (sharded DCP checkpoint), then the rest at 1 rank: the whole
    trajectory equals the one-process run's."""
    run_dir = tmp_path / "run"
    launch(
        [
            "configs/lm-tiny.toml",
            *sets("parallel.strategy=fsdp2", "train.halt_after_steps=3"),
            "--run-dir",
            str(run_dir),
        ]
    )
    ckpt = run_dir / "checkpoints" / "step_0000003"
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= {
        p.name for p in ckpt.iterdir()
    }  # each rank wrote its shard
    env = json.loads((run_dir / "env.json").read_text())["parallel"]
    assert (env["gather_dtype"], env["gradient_reduce_dtype"]) == ("float32", "float32")  # fp32 stays fp32
    assert len(losses(run_dir)) == 3
    torch.testing.assert_close(losses(run_dir), losses(single)[:3], rtol=RTOL, atol=0)

    # one process now accumulates 2 micro-batches of 8 for the same global batch
    assert (
        main(
            [
                "train",
                "--resume",
                str(run_dir),
                "--set",
                "train.halt_after_steps=0",
                "--set",
                "parallel.strategy=single",
            ]
        )
        == 0
    )
    assert_same_trajectory(run_dir, single)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_auto_ac_fallback_rebuilds_the_sharded_model_and_matches_single_process(single, strategy, tmp_path):
    """Auto AC falling back mid-run (forced: every measured step is over a tiny budget) prepares
    the model again, so FSDP2 shards the rebuilt model rather than having its blocks rewrapped;
    both ranks decide alike, and the trajectory is the one-process one."""
    run_dir = tmp_path / "run"
    forced = ["parallel.strategy=" + strategy, "memory.ac=auto", "memory.budget_gib=0.0001"]
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        str(ROOT / "tests" / "train" / "forced_ac_fallback.py"),
        *("configs/lm-tiny.toml", *sets(*forced), "--run-dir", str(run_dir)),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["ac"], summary["strategy"], summary["status"]) == ("full", strategy, "completed")
    assert summary["ac_note"].count("fell back") == 3, summary["ac_note"]
    torch.testing.assert_close(losses(run_dir), losses(single), rtol=RTOL, atol=0)
    torch.testing.assert_close(val_losses(run_dir), val_losses(single), rtol=RTOL, atol=0)
    # the rebuilt model's artifact loads in a fresh process
    evaluated = subprocess.run(
        [sys.executable, "-m", "trainwise.cli", "evaluate", str(run_dir), "--no-robustness", "--bootstrap", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0 and (run_dir / "eval" / "metrics.json").is_file(), evaluated.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("ac", ["none", "auto"])
def test_no_ddp_wrapper_outlives_the_process_group(ac, tmp_path):
    """train() leaves the group with no DDP wrapper alive (one would free the group from its
    Reducer's destructor, a rank hang at exit seen in CI); 'auto' rebuilds the wrapper mid-run."""
    forced = ["memory.ac=auto", "memory.budget_gib=0.0001"] if ac == "auto" else []
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
        str(ROOT / "tests" / "train" / "ddp_teardown_probe.py"),
        *(["--force-ac-none"] if ac == "auto" else []),
        *("configs/lm-tiny.toml", *sets("parallel.strategy=ddp", *forced), "--run-dir", str(tmp_path / "run")),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_killed_rank_is_restarted_and_the_run_matches_an_uninterrupted_one(ddp, tmp_path):
    run_dir = tmp_path / "run"
    out = launch(
        ["--max-restarts", "1", "configs/lm-tiny.toml", *sets("parallel.strategy=ddp"), "--run-dir", str(run_dir)],
        env={"TRAINWISE_TEST_KILL": "1:3"},
    )  # rank 1 dies (SIGKILL) after step 3's checkpoint
    assert "exitcode: -9" in out.stderr  # it really died and the group was restarted
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert losses(run_dir) == losses(ddp)
    for k, v in weights(ddp).items():
        assert torch.equal(weights(run_dir)[k], v), k


def test_fsdp_dtypes_follow_the_precision_policy():
    from trainwise.train.parallel import fsdp_dtypes
    from trainwise.train.precision import POLICIES

    assert fsdp_dtypes(POLICIES["bf16-mixed"], "auto", "auto") == (torch.bfloat16, torch.float32)
    assert fsdp_dtypes(POLICIES["fp32"], "auto", "auto") == (None, None)
    assert fsdp_dtypes(POLICIES["fp32"], "bf16", "fp32") == (torch.bfloat16, torch.float32)


# --- bad input: one clear error each, before any process starts ---------------------------------


def run_cli(capsys, args: list[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def test_impossible_global_batch(capsys, tmp_path):
    code, err = run_cli(
        capsys,
        [
            "launch",
            "--nproc-per-node",
            "3",
            "configs/lm-tiny.toml",
            *sets("parallel.strategy=ddp"),
            "--run-dir",
            str(tmp_path / "r"),
        ],
    )
    assert code == 2 and "train.global_batch_size = 16" in err and "multiple of 24" in err
    assert len(err.strip().splitlines()) == 1


def test_rendezvous_port_in_use(capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = run_cli(
            capsys,
            [
                "launch",
                "--nproc-per-node",
                "2",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "configs/lm-tiny.toml",
                *sets("parallel.strategy=ddp"),
                "--run-dir",
                str(tmp_path / "r"),
            ],
        )
    assert code == 2 and f"port {port} is already in use" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_nccl_without_cuda(capsys, tmp_path):
    code, err = run_cli(
        capsys,
        [
            "launch",
            "--nproc-per-node",
            "2",
            "configs/lm-tiny.toml",
            *sets("parallel.strategy=ddp", "parallel.backend=nccl"),
            "--run-dir",
            str(tmp_path / "r"),
        ],
    )
    assert code == 2 and "parallel.backend = 'nccl'" in err and "CUDA" in err
    from trainwise.errors import DeviceError
    from trainwise.train.parallel import pick_backend

    with pytest.raises(DeviceError, match="nccl"):  # the same check inside `trainwise train` under torchrun
        pick_backend("nccl", torch.device("cpu"))


def test_dcp_checkpoint_from_a_different_model(capsys, tmp_path):
    """A sharded checkpoint loaded into another architecture names the checkpoint and the mismatch."""
    from trainwise.train.checkpoint import _rng_state
    from trainwise.train.checkpoint_dcp import save_sharded
    from trainwise.workloads.lm import build_gpt

    cfg_args = sets()
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "configs/lm-tiny.toml",
                *cfg_args,
                "--set",
                "train.steps=1",
                "--set",
                "train.micro_batch_size=16",
                "--run-dir",
                str(run_dir),
            ]
        )
        == 0
    )
    shutil.rmtree(run_dir / "checkpoints")
    other = build_gpt(n_layers=1, n_heads=4, d_model=32, context=load_config("configs/lm-tiny.toml").model.context)
    opt = torch.optim.AdamW(other.parameters())
    save_sharded(
        run_dir / "checkpoints", 1, other, opt, None, {"history": {"best_val": 1.0, "bad_evals": 0}}, _rng_state()
    )
    code, err = run_cli(capsys, ["train", "--resume", str(run_dir)])
    assert code == 2 and "different model" in err and "step_0000001" in err
