"""`trainwise launch --emit slurm|kubeflow|ray`: one recipe, written as a cluster's own job spec.

The config is resolved here (every default written out, every --set applied) and copied next to
the spec as <spec stem>.config.toml, so the job trains exactly what was checked on this machine.
The run directory (--run-dir) must be on storage all nodes share. Each target is one function
`render(job) -> str` in its own module, registered in EMITTERS.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from trainwise.cluster.kubeflow import render_trainjob
from trainwise.cluster.slurm import render_sbatch
from trainwise.cluster.storage import warn_if_not_shared
from trainwise.config import config_to_toml, load_config
from trainwise.errors import ConfigError

DEFAULT_PORT = 29500  # torchrun's default rendezvous port
DEFAULT_IMAGE = "ghcr.io/your-org/trainwise:latest"  # an image with trainwise installed: the user's to build


@dataclass(frozen=True)
class ClusterJob:
    """What every emitter needs, resolved and checked."""

    name: str  # a DNS-label-safe job name (Kubernetes metadata.name, Slurm --job-name)
    spec_path: Path  # the job spec written (--out)
    config_path: Path  # absolute path of the resolved config copied next to the spec
    config_toml: str  # its text (Kubeflow and Ray carry it inside the spec)
    run_dir: str  # absolute path on shared storage
    nnodes: int
    nproc_per_node: int
    port: int
    max_restarts: int
    gpus: bool  # False when train.device = 'cpu'
    backend: str  # 'nccl' or 'gloo' (Ray's TorchConfig needs it named)
    image: str
    pvc: str | None

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def _render_slurm(job: ClusterJob) -> str:
    return render_sbatch(job)


def _render_kubeflow(job: ClusterJob) -> str:
    return render_trainjob(job)


def _render_ray(job: ClusterJob) -> str:
    # lazy: ray_job imports the training loop (torch, pandas, sklearn); launch/commands imports
    # this module at `trainwise --help`
    from trainwise.cluster.ray_job import render_ray_script

    return render_ray_script(job)


EMITTERS = {"slurm": _render_slurm, "kubeflow": _render_kubeflow, "ray": _render_ray}


def add_emit_args(p) -> None:
    """The `launch` arguments that write a job spec instead of starting processes."""
    p.add_argument(
        "--emit",
        metavar="TARGET",
        help=f"write a job spec for a cluster instead of training here: {', '.join(EMITTERS)} (needs --out, --run-dir)",
    )
    p.add_argument("--out", metavar="FILE", help="with --emit: where to write the job spec")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="with --emit kubeflow: container image with trainwise")
    p.add_argument(
        "--pvc",
        metavar="CLAIM",
        help="with --emit kubeflow: PersistentVolumeClaim mounted at --run-dir's parent on every node",
    )


def job_name(run_dir: Path) -> str:
    """An RFC 1035 label (Kubernetes metadata.name): lower case, '-', at most 63 characters.

    >>> job_name(Path("/shared/runs/LM_tiny.2node"))
    'trainwise-lm-tiny-2node'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", run_dir.name.lower()).strip("-")
    return f"trainwise-{slug}"[:63].rstrip("-")


def emit_requested(args) -> bool:
    """True when `launch` should write a job spec; --out or --pvc without --emit is a mistake."""
    if args.emit is None and (args.out or args.pvc):
        raise ConfigError(
            f"{'--out' if args.out else '--pvc'} writes a job spec: give --emit slurm|kubeflow|ray with it"
        )
    return args.emit is not None


def check_emit_args(args) -> None:
    if args.emit not in EMITTERS:
        raise ConfigError(f"--emit {args.emit!r}: unknown target; expected one of {', '.join(EMITTERS)}")
    if args.nproc_per_node < 1 or args.nnodes < 1 or args.max_restarts < 0:
        raise ConfigError(
            f"--nproc-per-node {args.nproc_per_node} --nnodes {args.nnodes} --max-restarts {args.max_restarts}: "
            "expected N >= 1, M >= 1, K >= 0"
        )
    given = {"CONFIG": args.config, "--out": args.out, "--run-dir": args.run_dir}
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"--emit {args.emit} needs {', '.join(missing)}: the recipe, the file to write, and the run directory "
            "on storage every node shares"
        )
    if args.resume:
        raise ConfigError(
            "--emit writes a new job; to continue a run on a cluster, emit it again with the same --run-dir "
            "(a job that finds a checkpoint there resumes from it)"
        )


def emit_job(args) -> int:
    """Check the recipe for the cluster's world size, write the spec and the config beside it."""
    # lazy: torchrun imports the training entry point (torch, pandas, sklearn); keeps `trainwise --help` fast
    from trainwise.launch.torchrun import check_world, parse_endpoint

    check_emit_args(args)
    port = parse_endpoint(args.rdzv_endpoint)[1] if args.rdzv_endpoint else DEFAULT_PORT
    cfg = load_config(args.config, args.overrides)
    check_world(cfg, args.nproc_per_node * args.nnodes, check_device=False)  # the cluster has the GPUs, not we
    out = Path(args.out).resolve()
    run_dir = Path(os.path.abspath(args.run_dir))
    if args.emit == "slurm":  # the batch script runs where this machine's mounts are seen (a login node)
        warn_if_not_shared(run_dir, args.nnodes)
    if args.emit == "kubeflow" and args.nnodes > 1 and not args.pvc:
        print(
            f"warning: --emit kubeflow without --pvc: {run_dir} will be each pod's own disk, but --nnodes "
            f"{args.nnodes} needs one run directory all nodes share; give --pvc CLAIM (mounted at {run_dir.parent})",
            file=sys.stderr,
        )
    config_toml = config_to_toml(cfg)
    job = ClusterJob(
        name=job_name(run_dir),
        spec_path=out,
        config_path=out.with_name(f"{out.stem}.config.toml"),
        config_toml=config_toml,
        run_dir=str(run_dir),
        nnodes=args.nnodes,
        nproc_per_node=args.nproc_per_node,
        port=port,
        max_restarts=args.max_restarts,
        gpus=cfg.train.device != "cpu",
        backend=_backend(cfg),
        image=args.image,
        pvc=args.pvc,
    )
    text = EMITTERS[args.emit](job)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(job.config_path, config_toml)
    _write_atomic(out, text, executable=args.emit in ("slurm", "ray"))
    print(f"wrote {out} ({args.emit}, {job.nnodes} x {job.nproc_per_node} processes) and {job.config_path}")
    print(f"run directory (must be shared by all nodes): {job.run_dir}", file=sys.stderr)
    return 0


def _backend(cfg) -> str:
    if cfg.parallel.backend != "auto":
        return cfg.parallel.backend
    return "gloo" if cfg.train.device == "cpu" else "nccl"


def _write_atomic(path: Path, text: str, executable: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    if executable:
        tmp.chmod(0o755)
    os.replace(tmp, path)
