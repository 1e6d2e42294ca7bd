"""Verbs: bench, demo."""

from __future__ import annotations

import time
from pathlib import Path

from trainwise.cliargs import add_config_args
from trainwise.errors import ConfigError

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "lm-tiny.toml"
DEMO_GRID = ["precision.policy=fp32,bf16-mixed,fp16-mixed", "memory.ac=none,full"]
# FP8 only without AC: on CPU it is emulated (real fp8 casts, fp32 matmuls) and several times
# slower, so it is here for its quality, once; AC does not change its numerics.
DEMO_VARIANTS = ["precision.policy=fp8-tensorwise"]
# A 4 MB slice of the corpus instead of the whole standard library; the steps are planned from
# the measured speed to fit --budget-min (trainwise.bench.plan), the same for every variant, so
# that speed and quality stay comparable. Warm-up and validation keep the recipe's share of the run.
DEMO_SETS = [
    "train.eval_batches=4",
    "train.checkpoint_every=0",
    "train.threads=2",
    "data.max_corpus_bytes=4000000",
    "log.progress=false",
]
DEMO_BUDGET_MIN = 6.0


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="train variants of a config side by side and recommend the fastest that keeps quality"
    )
    add_config_args(p, set_help="override a field of the base config for every variant (repeatable)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="SECTION.FIELD=V1,V2",
        help="a field and the values to try (repeatable; the variants are the cartesian product)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="A.B=V;C.D=W",
        help="one explicit variant: overrides separated by ';' (repeatable)",
    )
    p.add_argument(
        "--out", default="bench", help="output folder (rerunning into it skips finished variants; default: bench)"
    )
    p.add_argument("--cost-per-hour", type=float, help="machine price per hour, to show each run's cost")
    p.add_argument(
        "--budget-min",
        type=float,
        help="fit the whole bench into this many minutes: train.steps planned from measured speed "
        "(default: bench.budget_min; 0 = train.steps as given)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "demo",
        help="bench lm-tiny over precision x activation checkpointing on this machine, "
        "within a time budget (default 6 minutes)",
    )
    p.add_argument(
        "--budget-min",
        type=float,
        default=DEMO_BUDGET_MIN,
        help="minutes the whole demo may take; the steps are planned from measured speed "
        f"(default: {DEMO_BUDGET_MIN:g})",
    )
    p.add_argument("--out", default="bench-demo", help="output folder (default: bench-demo)")
    add_config_args(p, config=None, set_help="override a field (repeatable)")
    p.set_defaults(func=cmd_demo)


def _check_numbers(args) -> None:
    if getattr(args, "cost_per_hour", None) is not None and args.cost_per_hour < 0:
        raise ConfigError(f"--cost-per-hour {args.cost_per_hour}: expected a number >= 0")
    budget = args.budget_min
    if budget is not None and not budget > 0 and (args.func is cmd_demo or budget != 0):
        raise ConfigError(
            f"--budget-min {budget:g}: expected a number of minutes > 0 "
            "(the demo measures this machine and plans its steps to fit it; "
            f"the default is {DEMO_BUDGET_MIN:g})"
        )


def cmd_bench(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.bench.bench import run_bench

    _check_numbers(args)
    out = run_bench(
        args.config,
        args.grid,
        args.variant,
        args.overrides,
        args.out,
        args.cost_per_hour,
        args.budget_min,
        progress=True,
    )
    return _print_outcome(out)


def cmd_demo(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.bench.bench import run_bench

    _check_numbers(args)
    t0 = time.monotonic()  # the budget counts from here
    out = run_bench(
        DEMO_CONFIG,
        DEMO_GRID,
        DEMO_VARIANTS,
        DEMO_SETS + list(args.overrides),
        args.out,
        budget_min=args.budget_min,
        progress=True,
        started_s=t0,
    )
    code = _print_outcome(out)
    print(f"demo took {time.monotonic() - t0:.0f} s (budget {args.budget_min:g} min)")
    return code


def _print_outcome(out: dict) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.bench.recommend import summary_line

    rec = out["recommendation"]
    print(summary_line(rec))
    for r in rec.get("inconclusive", []):
        print(f"  inconclusive: {r['reason']}")
    for r in rec.get("rejected", []):
        print(f"  not chosen: {r['reason']}")
    print(f"report: {out['report']}")
    return 0 if rec.get("variant") is not None else 1
