"""Verb: launch. A thin wrapper over torchrun (the library side is trainwise.launch.torchrun)."""

from __future__ import annotations

from trainwise.cliargs import add_config_args
from trainwise.cluster.emit import add_emit_args, emit_job, emit_requested


def register(sub) -> None:
    p = sub.add_parser("launch", help="train on N processes per node (and M nodes) with torchrun: DDP or FSDP2")
    add_config_args(
        p, config_required=False, run_dir="where to write the run (required with --nnodes > 1, so all nodes agree)"
    )
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
    p.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint, at this world size"
    )
    add_emit_args(p)  # --emit slurm|kubeflow|ray --out FILE: write a cluster job spec instead
    p.set_defaults(func=cmd_launch)


def cmd_launch(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.launch.torchrun import Topology, launch

    if emit_requested(args):
        return emit_job(args)
    topology = Topology(args.nproc_per_node, args.nnodes, args.node_rank, args.max_restarts, args.rdzv_endpoint)
    launch(args.config, args.overrides, topology, args.run_dir, args.resume)
    return 0
