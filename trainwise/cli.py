"""The `trainwise` command line.

Each verb lives in the module of the component it belongs to, as a function
`register(subparsers)` that adds its parser and sets `func` to a plain function taking the parsed
arguments and returning an exit code. This file only collects them, runs one, and turns a
`TrainwiseError` into one line on stderr and its exit code, without a traceback; output piped to a
reader that stops early (`| head`) ends the verb quietly with 141, as for other Unix tools.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from trainwise import __version__
from trainwise.errors import TrainwiseError

# Modules that contribute verbs (each has `register(subparsers)`), in `--help` order.
COMMAND_MODULES = [
    "trainwise.train.commands",  # train
    "trainwise.config_commands",  # config
    "trainwise.env_commands",  # info
    "trainwise.evaluate.commands",  # evaluate, compare, data check
    "trainwise.registry.commands",  # register, promote, rollback, history, card, ui
    "trainwise.monitor.commands",  # monitor
    "trainwise.launch.commands",  # launch (torchrun: DDP, FSDP2)
    "trainwise.serve.commands",  # serve, export
    "trainwise.train.memory_commands",  # estimate, fit-batch
    "trainwise.bench.commands",  # bench, demo
    "trainwise.numerics.commands",  # numerics
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainwise",
        description="Train neural networks cheaper, with evidence: measure each efficiency technique "
        "on your model and hardware, and keep the cheapest one that keeps quality.",
    )
    parser.add_argument("--version", action="version", version=f"trainwise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return run_verb(argv)
    except BrokenPipeError:
        # The reader went away (`trainwise history NAME --json | head`): stop quietly, as Unix tools
        # do. stdout now points at /dev/null, so the interpreter's last flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a tool stopped by a closed pipe


def run_verb(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside main, rather than at interpreter exit
        return code
    except TrainwiseError as e:
        # one write: the ranks of a distributed run share stderr, and print() writes the text and
        # its newline separately, so two ranks' lines could run together
        sys.stderr.write(f"trainwise {args.command}: error: {e}\n")
        sys.stderr.flush()
        return e.exit_code
    except KeyboardInterrupt:
        print(f"trainwise {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
