"""Verb: train (the library side is trainwise.train.entry.run_training)."""

from __future__ import annotations

import os
from pathlib import Path

from trainwise.cliargs import add_config_args
from trainwise.runstatus import RunStatus


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config and write a run directory")
    add_config_args(
        p,
        config_required=False,
        run_dir="where to write the run (default: runs/<time>-<workload>-<precision>-<hash>)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    # lazy: the CLI imports every verb module to register its parser; torch (~2 s) loads only when training
    from trainwise.train.entry import run_training

    result, mlflow_run_id = run_training(args.config, args.overrides, args.run_dir, args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print_summary(result.run_dir, result.summary)
        if mlflow_run_id:
            print(f"mlflow: logged as run {mlflow_run_id} (browse with `trainwise ui`)")
    return 0 if RunStatus(result.summary["status"]).succeeded else 1


def print_summary(run_dir: Path, s: dict) -> None:
    unit = s.get("throughput_unit", "tokens")

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    print(f"run: {run_dir}")
    print(
        f"status: {s['status']} after {s['steps']} steps "
        f"({s['precision']}, ac={s['ac']}, {s['strategy']} x{s['world_size']})"
    )
    print(f"loss: train {fmt(s['final_train_loss'], '.4f')}  val {fmt(s['final_val_loss'], '.4f')}")
    print(
        f"speed: median step {fmt(s['median_step_ms'], '.1f')} ms "
        f"(min {fmt(s.get('min_step_ms'), '.1f')}, max {fmt(s.get('max_step_ms'), '.1f')}), "
        f"{fmt(s['tokens_per_s'], ',.0f')} {unit}/s"
    )
    if s.get("peak_memory_bytes") is not None:
        print(
            f"memory: peak activations {s['peak_activation_bytes'] / 2**20:.1f} MiB, "
            f"peak tracked total {s['peak_memory_bytes'] / 2**20:.1f} MiB"
        )
    if s.get("skipped_steps"):
        print(f"skipped steps: {s['skipped_steps']}")
    for alarm in s.get("alarms", []):
        print(f"ALARM: {alarm}")
