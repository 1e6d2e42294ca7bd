"""Verbs: estimate, fit-batch.

The CLI imports every verb module to register its parser, so the modules that import torch
(~2 s) are imported inside the verbs: `trainwise --help` and the other verbs do not pay for them.
"""

from __future__ import annotations

import json
import os

from trainwise.cliargs import add_config_args
from trainwise.config import load_config
from trainwise.errors import ConfigError

MIB = 2**20


def _add_common(p) -> None:
    add_config_args(p, set_help="override one config field (repeatable), e.g. --set memory.ac=full")
    p.add_argument(
        "--world-size",
        type=int,
        default=int(os.environ.get("WORLD_SIZE", "1")),
        help="processes the run will use (default: $WORLD_SIZE or 1); with parallel.strategy",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub) -> None:
    p = sub.add_parser(
        "estimate", help="predict peak training memory per process (activations included) without training"
    )
    _add_common(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("fit-batch", help="the largest micro-batch and the AC mode that fit a memory budget")
    _add_common(p)
    p.add_argument("--budget-gib", type=float, required=True, help="memory budget per process in GiB")
    p.add_argument(
        "--max-micro-batch", type=int, default=0, help="search no higher (default: global batch / world size)"
    )
    p.add_argument("--no-confirm", action="store_true", help="skip the confirming measurement of one real step")
    p.set_defaults(func=cmd_fit_batch)


def _load(args):
    # torch and the workloads load here, when the verb runs (see the module note)
    from trainwise.workloads.build import build_workload

    if args.world_size < 1:
        raise ConfigError(f"--world-size {args.world_size}: expected a positive integer")
    cfg = load_config(args.config, args.overrides)
    return cfg, build_workload(cfg)


def cmd_estimate(args) -> int:
    # torch and the workloads load here, when the verb runs (see the module note)
    from trainwise.train.autoac import resolve_ac_mode
    from trainwise.train.estimate import estimate_memory

    cfg, workload = _load(args)
    mode, note = resolve_ac_mode(cfg, workload, args.world_size)
    est = estimate_memory(cfg, workload, ac_mode=mode, world_size=args.world_size)
    if note:
        est["ac_note"] = note
    if args.json:
        print(json.dumps(est, indent=2))
        return 0
    i = est["inputs"]
    print(
        f"estimate for {args.config}: {i['precision']}, ac={i['ac']}, micro-batch {i['micro_batch_size']}, "
        f"example shape {i['example_shape']}, {i['strategy']} x{i['world_size']}"
    )
    if note:
        print(note)
    print(
        f"peak memory per process: {est['peak_memory_bytes'] / MIB:.1f} MiB "
        f"({est['peak_memory_bytes'] / 2**30:.4f} GiB)"
    )
    for part, v in est["memory_breakdown"].items():
        print(f"  {part:<16} {v / MIB:10.1f} MiB")
    print(f"parameters + gradients + optimizer state: {est['parameter_state_bytes'] / MIB:.1f} MiB")
    return 0


def cmd_fit_batch(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.train.fitbatch import fit_batch

    if args.budget_gib <= 0:
        raise ConfigError(f"--budget-gib {args.budget_gib}: expected a positive number of GiB")
    cfg, workload = _load(args)
    res = fit_batch(cfg, workload, args.budget_gib, args.max_micro_batch, args.world_size, confirm=not args.no_confirm)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    measured = (
        "not measured" if res["measured_peak_bytes"] is None else f"measured {res['measured_peak_bytes'] / MIB:.1f} MiB"
    )
    print(
        f"budget {args.budget_gib:g} GiB: micro-batch {res['micro_batch_size']} with ac={res['ac']} "
        f"(estimated {res['estimated_peak_bytes'] / MIB:.1f} MiB, {measured}; searched up to {res['max_micro_batch']})"
    )
    for mode, v in res["per_mode"].items():
        print(
            f"  {mode:<10} largest micro-batch {v['largest_micro_batch']:5d} "
            f"(estimated {v['estimated_peak_bytes'] / MIB:.1f} MiB), "
            f"usable (divides the global batch) {v['micro_batch_size']}"
        )
    if res["note"]:
        print(res["note"])
    print(f"use: --set train.micro_batch_size={res['micro_batch_size']} --set memory.ac={res['ac']}")
    return 0
