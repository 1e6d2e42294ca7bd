"""Verb: launch. A thin wrapper over torchrun (`python -m torch.distributed.run`).

It checks what can be checked before any process starts (config, global batch, backend, the
rendezvous port, the run directory), fixes one run directory for all ranks, and runs
`trainwise train` under torchrun with c10d rendezvous, so the same command works on a laptop, one
multi-GPU box and several nodes. With --max-restarts K a failed group is restarted and resumes
from its last checkpoint by itself (trainwise.train.parallel.elastic_restart).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

from trainwise.cluster.emit import add_emit_args, emit_job, emit_requested
from trainwise.commands.core import add_config_args, resume_config
from trainwise.cluster.storage import warn_if_not_shared
from trainwise.config import load_config
from trainwise.errors import ConfigError, DeviceError, TrainwiseError

LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}


def register(sub) -> None:
    p = sub.add_parser("launch", help="train on N processes per node (and M nodes) with torchrun: DDP or FSDP2")
    add_config_args(p, config_required=False)
    p.add_argument(
        "--nproc-per-node",
        type=int,
        required=True,
        metavar="N",
        help="processes on this node (one per GPU; any number on CPU)",
    )
    p.add_argument("--nnodes", type=int, default=1, metavar="M", help="number of nodes (default 1)")
    p.add_argument(
        "--node-rank", type=int, default=0, metavar="R", help="this node's rank, 0..M-1 (node 0 hosts the rendezvous)"
    )
    p.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="rendezvous address, the same on every node (default: a free local port, one node only)",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="restart the group up to K times after a failure; it resumes from the last checkpoint",
    )
    p.add_argument("--run-dir", help="where to write the run (required with --nnodes > 1, so all nodes agree)")
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint, at this world size"
    )
    add_emit_args(p)  # --emit slurm|kubeflow|ray --out FILE: write a cluster job spec instead
    p.set_defaults(func=cmd_launch)


def check_port_free(host: str, port: int) -> None:
    """The rendezvous store binds HOST:PORT on the node that hosts it: fail now, with the port named."""
    with socket.socket() as s:
        try:
            s.bind(("" if host in LOCAL_HOSTS else host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"--rdzv-endpoint {host}:{port}: port {port} is already in use on this machine; choose another port (or stop the other job)"
                ) from None
            # otherwise (a remote or unresolvable host) it is not ours to check: torchrun reports it


def parse_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--rdzv-endpoint {text!r}: expected HOST:PORT, e.g. node0.cluster:29500")
    return host, int(port)


def check_world(cfg, world_size: int, check_device: bool = True) -> None:
    """The checks every rank would make, made once before anything starts (the device's only where
    the processes will run: not for a job spec emitted for a cluster)."""
    tc, par = cfg.train, cfg.parallel
    if world_size > 1 and par.strategy == "single":
        raise ConfigError(
            f"parallel.strategy = 'single' cannot run on {world_size} processes; add --set parallel.strategy=ddp (or fsdp2)"
        )
    if tc.global_batch_size % (tc.micro_batch_size * world_size):
        raise ConfigError(
            f"train.global_batch_size = {tc.global_batch_size} cannot be made from train.micro_batch_size = {tc.micro_batch_size} "
            f"x world size {world_size} x accumulation steps; make it a multiple of {tc.micro_batch_size * world_size}"
        )
    if check_device and (par.backend == "nccl" or (par.backend == "auto" and tc.device == "cuda")):
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                "parallel.backend = 'nccl' (or train.device = 'cuda') needs CUDA GPUs, and none is visible; use parallel.backend = 'gloo' on CPU"
            )


def torchrun_args(args, rdzv: str, run_id: str, train_args: list[str]) -> list[str]:
    return [
        f"--nproc-per-node={args.nproc_per_node}",
        f"--nnodes={args.nnodes}",
        f"--node-rank={args.node_rank}",
        f"--max-restarts={args.max_restarts}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rdzv}",
        f"--rdzv-id={run_id}",
        "-m",
        "trainwise.cli",
        "train",
        *train_args,
    ]


def cmd_launch(args) -> int:
    from trainwise.train.rundir_setup import default_run_dir

    if emit_requested(args):
        return emit_job(args)
    if args.nproc_per_node < 1 or args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes or args.max_restarts < 0:
        raise ConfigError(
            f"--nproc-per-node {args.nproc_per_node} --nnodes {args.nnodes} --node-rank {args.node_rank} --max-restarts {args.max_restarts}: expected N >= 1, M >= 1, 0 <= R < M, K >= 0"
        )
    if args.resume:
        if args.config or args.run_dir:
            raise ConfigError(
                "--resume RUN_DIR takes the config from RUN_DIR/config.toml: give no CONFIG or --run-dir with it"
            )
        run_dir = Path(args.resume)
        cfg = resume_config(run_dir, args.overrides)
        train_args = ["--resume", str(run_dir)]
    else:
        if not args.config:
            raise ConfigError("give a CONFIG (e.g. configs/lm-tiny.toml) or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
        if args.nnodes > 1 and not args.run_dir:
            raise ConfigError(
                "--nnodes > 1 needs --run-dir DIR on a filesystem all nodes share, so every node writes the same run"
            )
        run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
        warn_if_not_shared(run_dir, args.nnodes)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run directory {run_dir} already exists and is not empty; use --resume {run_dir} to continue it, or choose another --run-dir"
            )
        train_args = [args.config, *sum((["--set", o] for o in args.overrides), []), "--run-dir", str(run_dir)]
    check_world(cfg, args.nproc_per_node * args.nnodes)
    if args.rdzv_endpoint:
        host, port = parse_endpoint(args.rdzv_endpoint)
        if args.node_rank == 0:  # node 0 hosts the store; the others' port is node 0's, in use by design
            check_port_free(host, port)
        rdzv = args.rdzv_endpoint
    elif args.nnodes > 1:
        raise ConfigError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address), the same on every node")
    else:
        from trainwise.train.parallel import free_port

        rdzv = f"127.0.0.1:{free_port()}"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *torchrun_args(args, rdzv, run_dir.name or "trainwise", train_args),
    ]
    print(f"launch: {args.nproc_per_node} x {args.nnodes} processes, rendezvous {rdzv}, run {run_dir}", file=sys.stderr)
    # torchrun shares its rendezvous TCPStore with the workers by default; after a restart they can
    # read the previous attempt's keys and connect to dead peers (pytorch/pytorch#135712, #167288).
    # A store per attempt avoids it.
    rc = run_torchrun(cmd, {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    if rc != 0:
        where = (
            f"; the run is in {run_dir} (continue it with --resume {run_dir})"
            if (run_dir / "config.toml").is_file()
            else "; no run directory was written"
        )
        raise TrainwiseError(
            f"the training processes failed (torchrun exit code {rc}); the ranks' own errors are printed above{where}"
        )
    return 0


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


LAUNCHER_FAILURE = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"
