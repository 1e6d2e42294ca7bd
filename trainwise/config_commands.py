"""Verb: config (print the resolved config, or every field with --explain)."""

from __future__ import annotations

from trainwise.cliargs import add_config_args


def register(sub) -> None:
    p = sub.add_parser("config", help="print the resolved config, or every field with --explain")
    add_config_args(p, config_required=False)
    p.add_argument("--explain", action="store_true", help="list every field, its default and its meaning")
    p.set_defaults(func=cmd_config)


def cmd_config(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.config import config_to_toml, explain, load_config

    print(explain() if args.explain else config_to_toml(load_config(args.config, args.overrides)))
    return 0
