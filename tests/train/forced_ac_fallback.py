"""`trainwise train` with auto AC's estimated choice forced to 'none', for the tests that run it
under torchrun (a test cannot monkeypatch the ranks): with a tiny `memory.budget_gib`, every
measured step falls back to the next mode (none -> selective -> every-n -> full).

Usage: python -m torch.distributed.run --standalone --nproc-per-node N tests/train/forced_ac_fallback.py
       CONFIG --set ... --run-dir DIR
"""

from __future__ import annotations

import sys


def force_auto_to_choose_none() -> None:
    import trainwise.train.run as run

    run.resolve_ac_mode = lambda cfg, workload, world_size=1: ("none", "forced by the test")


def main() -> int:
    from trainwise.cli import main as cli

    force_auto_to_choose_none()
    return cli(["train", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
