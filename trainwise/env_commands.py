"""Verb: info (device facts and measured peak matmul throughput; trainwise.model_peaks.device_report)."""

from __future__ import annotations

import json

from trainwise.cliargs import add_config_args
from trainwise.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("info", help="device facts and measured peak matmul throughput per dtype")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--refresh", action="store_true", help="measure again instead of using the cache")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_config_args(
        p,
        config="flag",
        config_help="also measure the peak on this recipe's own matmul shapes (one forward + backward of a "
        "micro-batch), e.g. configs/lm-small.toml; always measured now, never cached",
        set_help="override a field of --config (repeatable)",
    )
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.config import load_config
    from trainwise.env import format_info
    from trainwise.model_peaks import device_report

    if args.overrides and not args.config:
        raise ConfigError("--set needs --config: it overrides a field of that recipe")
    cfg = load_config(args.config, args.overrides) if args.config else None  # a bad recipe fails before measuring
    info = device_report(args.device, args.refresh, cfg, args.config)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
