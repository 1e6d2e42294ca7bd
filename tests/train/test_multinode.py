"""Several nodes, played on one machine: two `trainwise launch --nnodes 2` processes (one CPU
worker each, gloo, c10d rendezvous on 127.0.0.1), and the sbatch script that `--emit slurm`
writes, run with a stand-in `srun`/`scontrol`.

Each "node" is its own torchrun agent, as on a real cluster: they meet only through the rendezvous
endpoint and the shared run directory. The reference is one process on the same global batch
(tests/train/test_distributed.py's tolerance: fp32 reductions in another order).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.train.test_distributed import RTOL, SMALL, assert_same_trajectory, losses, weights
from trainwise.cli import main
from trainwise.train.parallel import free_port

ROOT = Path(__file__).resolve().parents[2]
# 12 steps, a checkpoint every 2: room to kill a worker mid-run after the first checkpoint
STEPS = [*SMALL, "train.steps=12", "train.checkpoint_every=2", "train.eval_every=6", "log.mlflow=false"]
NODE = ["parallel.strategy=ddp", "train.device=cpu"]  # 1 process per node, micro-batch 8 of global 16


def sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, micro-batch 16 (validation: 2 x 16 = the same 32 examples as 4 x 8)."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    args = sets(*STEPS, "train.micro_batch_size=16", "train.eval_batches=2")
    assert main(["train", "configs/lm-tiny.toml", *args, "--run-dir", str(run_dir)]) == 0
    return run_dir


def start_node(rank: int, port: int, run_dir: Path, extra: list[str] = ()) -> subprocess.Popen:
    cmd = [
        *(sys.executable, "-m", "trainwise.cli", "launch", "--nproc-per-node", "1", "--nnodes", "2"),
        *("--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}", *extra),
        *("configs/lm-tiny.toml", *sets(*STEPS, *NODE), "--run-dir", str(run_dir)),
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(nodes: list[subprocess.Popen]) -> list[str]:
    """Wait for every node; each must succeed. Returns their stderr."""
    errs = [node.communicate(timeout=300)[1] for node in nodes]
    report = "\n".join(f"--- node {rank}:\n{err[-4000:]}" for rank, err in enumerate(errs))
    assert [node.returncode for node in nodes] == [0] * len(nodes), report
    return errs


def two_nodes(run_dir: Path, extra: list[str] = ()) -> list[subprocess.Popen]:
    port = free_port()
    node0 = start_node(0, port, run_dir, extra)
    return [node0, start_node(1, port, run_dir, extra)]


@pytest.fixture(scope="module")
def multinode(tmp_path_factory) -> tuple[Path, list[str]]:
    run_dir = tmp_path_factory.mktemp("multinode") / "run"
    return run_dir, finish(two_nodes(run_dir))


@pytest.mark.slow
def test_two_nodes_match_one_process(single, multinode):
    run_dir, errs = multinode
    assert len(losses(run_dir)) == 12
    assert_same_trajectory(run_dir, single)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["strategy"], summary["world_size"]) == ("completed", "ddp", 2)
    # both nodes warned that the run directory is on this machine's own disk
    assert all("is on a local filesystem" in err for err in errs)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (psutil is not a dependency: read the parent ids from /proc)."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we read
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parent_of.items() if parent in frontier]
        found += frontier
    return found


def worker_pid(launch_pid: int) -> int | None:
    """The training process under a launch: `python -m trainwise.cli train`, started by torchrun."""
    for pid in descendants(launch_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trainwise.cli" in argv and b"train" in argv and b"torch.distributed.run" not in argv:
            return pid
    return None


@pytest.mark.slow
def test_a_killed_node_resumes_and_matches_an_uninterrupted_run(multinode, tmp_path):
    """SIGKILL node 1's worker from outside once a checkpoint exists; with --max-restarts 1 both
    nodes restart, resume from the last checkpoint and end with the uninterrupted run's weights.

    Node 0's torchrun may restart only because the membership changed, which it does not count as
    a restart: the group must still resume (it used to refuse the existing run directory)."""
    uninterrupted, _ = multinode
    run_dir = tmp_path / "run"
    nodes = two_nodes(run_dir, ["--max-restarts", "1"])
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "step_0000002").is_dir():
        assert time.monotonic() < deadline and nodes[1].poll() is None, "no checkpoint was written"
        time.sleep(0.02)
    victim = worker_pid(nodes[1].pid)
    assert victim is not None, "node 1 has no training process"
    killed_at = len((run_dir / "metrics.jsonl").read_text().splitlines())
    os.kill(victim, signal.SIGKILL)
    errs = finish(nodes)

    assert killed_at < 12, "the run had finished before the kill"
    assert "exitcode: -9" in errs[1]  # node 1's agent saw its worker die and restarted the group
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
    assert losses(run_dir) == losses(uninterrupted)
    for k, v in weights(uninterrupted).items():
        assert torch.equal(weights(run_dir)[k], v), k


STAND_IN_SRUN = """#!/bin/bash
# Stand-in for Slurm's srun: run the task once per node of the allocation, all on this machine,
# with the variables Slurm sets for each task.
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_NTASKS=$SLURM_NNODES "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""
# `scontrol show hostnames LIST` prints one host per line
STAND_IN_SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] || { echo "stand-in scontrol: only 'show hostnames'" >&2; exit 1; }
tr ',' '\\n' <<< "$3"
"""


@pytest.mark.slow
def test_the_emitted_sbatch_script_trains_on_two_nodes(single, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", STAND_IN_SRUN), ("scontrol", STAND_IN_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    script, run_dir = tmp_path / "job.sbatch", tmp_path / "shared" / "run"
    emit = [
        *("launch", "--emit", "slurm", "--nproc-per-node", "1", "--nnodes", "2"),
        *("--rdzv-endpoint", f"127.0.0.1:{free_port()}", "configs/lm-tiny.toml", *sets(*STEPS, *NODE)),
        *("--run-dir", str(run_dir), "--out", str(script)),
    ]
    assert main(emit) == 0
    assert "srun torchrun" in script.read_text()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",  # torchrun from this venv
        "SLURM_JOB_ID": "4242",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1",
    }
    job = subprocess.Popen(
        ["bash", str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a hung job is killed with every node's processes
    )
    try:
        _, err = job.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        _, err = job.communicate()
        pytest.fail(f"the sbatch job did not finish in 300 s; its stderr ends:\n{err[-3000:]}")
    assert job.returncode == 0, err[-3000:]
    torch.testing.assert_close(losses(run_dir), losses(single), rtol=RTOL, atol=0)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["world_size"]) == ("completed", 2)
    for k, v in weights(single).items():
        torch.testing.assert_close(weights(run_dir)[k], v, rtol=1e-4, atol=1e-6)


def test_a_later_node_does_not_take_node_0s_port_for_a_conflict(monkeypatch, tmp_path):
    """Node 0's store already listens on the endpoint when node 1 starts on the same machine: only
    node 0 checks the port (node 1 used to refuse with 'port ... is already in use')."""
    import socket

    from trainwise.launch import torchrun as launch

    started = []
    monkeypatch.setattr(launch, "run_torchrun", lambda cmd, env: started.append(cmd) or 0)
    with socket.socket() as store:
        store.bind(("127.0.0.1", 0))
        store.listen()
        port = store.getsockname()[1]
        args = ["--nproc-per-node", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
        run = ["configs/lm-tiny.toml", *sets(*STEPS, *NODE), "--run-dir", str(tmp_path / "run")]
        assert main(["launch", *args, "--node-rank", "1", *run]) == 0
        assert f"--rdzv-endpoint=127.0.0.1:{port}" in started[0]
        assert main(["launch", *args, "--node-rank", "0", *run]) == 2  # node 0 would host it: taken


@pytest.mark.slow
def test_the_emitted_ray_script_trains_on_two_ray_workers(single, tmp_path):
    """The script `--emit ray` writes, run unchanged on a local Ray instance with 2 CPUs: Ray starts
    2 workers and joins their process group; trainwise's training function runs in each."""
    pytest.importorskip("ray.train.torch", reason="Ray Train is an optional extra: pip install 'trainwise[ray]'")
    script, run_dir = tmp_path / "job_ray.py", tmp_path / "shared" / "run"
    emit = [
        *("launch", "--emit", "ray", "--nproc-per-node", "1", "--nnodes", "2", "configs/lm-tiny.toml"),
        *(*sets(*STEPS, *NODE), "--run-dir", str(run_dir), "--out", str(script)),
    ]
    assert main(emit) == 0
    local_ray = (
        "import runpy, sys, ray; ray.init(num_cpus=2, include_dashboard=False); "
        "runpy.run_path(sys.argv[1], run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", local_ray, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_trajectory(run_dir, single)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["strategy"], summary["world_size"]) == ("completed", "ddp", 2)


def test_a_group_the_launcher_joined_is_used_and_left_to_it(monkeypatch):
    """Ray Train joins the process group before trainwise's training function runs, and closes it
    after: trainwise takes rank and size from that group and does not destroy it."""
    import torch.distributed as tdist

    from trainwise.train.parallel import setup_distributed, teardown_distributed

    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        ctx = setup_distributed("ddp", "auto", torch.device("cpu"))
        assert (ctx.rank, ctx.world_size, ctx.backend, ctx.owns_group) == (0, 1, "gloo", False)
        teardown_distributed(ctx)
        assert tdist.is_initialized()  # still the launcher's to close
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()
    ctx = setup_distributed("ddp", "auto", torch.device("cpu"))  # no launcher: trainwise's own group of one
    assert ctx.owns_group and tdist.is_initialized()
    teardown_distributed(ctx)
    assert not tdist.is_initialized()
