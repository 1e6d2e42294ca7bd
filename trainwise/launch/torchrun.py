"""A thin wrapper over torchrun (`python -m torch.distributed.run`).

It checks what can be checked before any process starts (config, global batch, backend, the
rendezvous port, the run directory), fixes one run directory for all ranks, and runs
`trainwise train` under torchrun with c10d rendezvous, so the same command works on a laptop, one
multi-GPU box and several nodes. With max_restarts K a failed group is restarted and resumes
from its last checkpoint by itself (trainwise.train.parallel.elastic_restart).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from trainwise.cluster.storage import warn_if_not_shared
from trainwise.config_checks import accumulation_steps
from trainwise.errors import ConfigError, DeviceError, TrainwiseError
from trainwise.ports import check_port_free


@dataclass(frozen=True)
class Topology:
    """Processes per node, nodes, this node's rank, restarts allowed, and the rendezvous address."""

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    max_restarts: int = 0
    rdzv_endpoint: str | None = None

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def check_topology(t: Topology) -> None:
    if t.nproc_per_node < 1 or t.nnodes < 1 or not 0 <= t.node_rank < t.nnodes or t.max_restarts < 0:
        raise ConfigError(
            f"--nproc-per-node {t.nproc_per_node} --nnodes {t.nnodes} --node-rank {t.node_rank} "
            f"--max-restarts {t.max_restarts}: expected N >= 1, M >= 1, 0 <= R < M, K >= 0"
        )


def parse_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--rdzv-endpoint {text!r}: expected HOST:PORT, e.g. node0.cluster:29500")
    if not 0 < int(port) < 65536:
        raise ConfigError(
            f"--rdzv-endpoint {text!r}: port {port} is out of range (expected 1..65535); "
            "expected HOST:PORT, e.g. node0.cluster:29500"
        )
    return host, int(port)


def check_world(cfg, world_size: int, check_device: bool = True) -> None:
    """The checks every rank would make, made once before anything starts (the device's only where
    the processes will run: not for a job spec emitted for a cluster)."""
    tc, par = cfg.train, cfg.parallel
    if world_size > 1 and par.strategy == "single":
        raise ConfigError(
            f"parallel.strategy = 'single' cannot run on {world_size} processes; "
            "add --set parallel.strategy=ddp (or fsdp2)"
        )
    accumulation_steps(tc.global_batch_size, tc.micro_batch_size, world_size)
    if check_device and (par.backend == "nccl" or (par.backend == "auto" and tc.device == "cuda")):
        # lazy: the launcher checks CUDA only for an nccl world; torch is not otherwise needed here
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                "parallel.backend = 'nccl' (or train.device = 'cuda') needs CUDA GPUs, and none is visible; "
                "use parallel.backend = 'gloo' on CPU"
            )


def rendezvous(t: Topology) -> str:
    """The HOST:PORT every node meets at, its port checked when this machine hosts it."""
    if t.rdzv_endpoint:
        host, port = parse_endpoint(t.rdzv_endpoint)
        if t.node_rank == 0:  # node 0 hosts the store; the others' port is node 0's, in use by design
            check_port_free(host, port, f"--rdzv-endpoint {host}:{port}", rendezvous=True)
        return t.rdzv_endpoint
    if t.nnodes > 1:
        raise ConfigError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address), the same on every node")
    # lazy: train.parallel pulls the training stack; the launcher process only spawns the workers
    from trainwise.train.parallel import free_port

    return f"127.0.0.1:{free_port()}"


def torchrun_args(t: Topology, rdzv: str, run_id: str, train_args: list[str]) -> list[str]:
    return [
        f"--nproc-per-node={t.nproc_per_node}",
        f"--nnodes={t.nnodes}",
        f"--node-rank={t.node_rank}",
        f"--max-restarts={t.max_restarts}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rdzv}",
        f"--rdzv-id={run_id}",
        "-m",
        "trainwise.cli",
        "train",
        *train_args,
    ]


def plan_run(config: str | None, overrides: list[str], run_dir: str | None, resume: str | None, nnodes: int):
    """The config, the run directory all ranks write, and the `trainwise train` arguments each runs."""
    # lazy: the training stack (torch, pandas, sklearn) loads only when a run is planned, not when the
    # launcher or `launch --emit` imports this module
    from trainwise.train.entry import run_config
    from trainwise.train.rundir_setup import default_run_dir

    cfg = run_config(config, overrides, run_dir, resume)
    if resume:
        return cfg, Path(resume), ["--resume", str(Path(resume))]
    if nnodes > 1 and not run_dir:
        raise ConfigError(
            "--nnodes > 1 needs --run-dir DIR on a filesystem all nodes share, so every node writes the same run"
        )
    path = Path(run_dir) if run_dir else default_run_dir(cfg)
    warn_if_not_shared(path, nnodes)
    if path.exists() and any(path.iterdir()):
        raise ConfigError(
            f"run directory {path} already exists and is not empty; use --resume {path} to continue it, "
            "or choose another --run-dir"
        )
    return cfg, path, [config, *sum((["--set", o] for o in overrides), []), "--run-dir", str(path)]


def launch(
    config: str | None, overrides: list[str], topology: Topology, run_dir: str | None = None, resume: str | None = None
) -> Path:
    """Check everything, then run `trainwise train` under torchrun; returns the run directory.

    Raises TrainwiseError when the training processes fail (their own errors are already printed).
    """
    check_topology(topology)
    cfg, path, train_args = plan_run(config, overrides, run_dir, resume, topology.nnodes)
    check_world(cfg, topology.world_size)
    rdzv = rendezvous(topology)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *torchrun_args(topology, rdzv, path.name or "trainwise", train_args),
    ]
    print(
        f"launch: {topology.nproc_per_node} x {topology.nnodes} processes, rendezvous {rdzv}, run {path}",
        file=sys.stderr,
    )
    # torchrun shares its rendezvous TCPStore with the workers by default; after a restart they can
    # read the previous attempt's keys and connect to dead peers (pytorch/pytorch#135712, #167288).
    # A store per attempt avoids it.
    rc = run_torchrun(cmd, {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    if rc != 0:
        where = (
            f"; the run is in {path} (continue it with --resume {path})"
            if (path / "config.toml").is_file()
            else "; no run directory was written"
        )
        raise TrainwiseError(
            f"the training processes failed (torchrun exit code {rc}); the ranks' own errors are printed above{where}"
        )
    return path


LAUNCHER_FAILURE = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"


def run_torchrun(cmd: list[str], env: dict) -> int:
    """Run torchrun, passing the ranks' output through, but not torchrun's own report of a failed
    group: a Python traceback of the launcher plus a ChildFailedError box, printed after the ranks
    have already said what went wrong in one line each. A rank's own traceback is kept."""
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, bufsize=1)
    held: list[str] = []  # a traceback being read: the launcher's (dropped) or a rank's (printed)
    box_rules_left = 0  # the ChildFailedError box: a '=' rule, the report, a closing '=' rule
    for line in proc.stderr:
        if box_rules_left:
            box_rules_left -= line.startswith("=")
            continue
        if held or line.startswith("Traceback (most recent call last):"):
            held.append(line)
            if LAUNCHER_FAILURE in line:
                held, box_rules_left = [], 2
            elif not line.startswith((" ", "Traceback")):  # the exception line ends a rank's own traceback
                sys.stderr.write("".join(held))
                held = []
            continue
        sys.stderr.write(line)
    sys.stderr.write("".join(held))
    return proc.wait()
