"""`trainwise train` under torchrun, failing when a DistributedDataParallel wrapper is still alive
as train() leaves the process group (tests/train/test_distributed.py).

A wrapper that outlives the group frees it from its Reducer's destructor, holding the GIL, and can
deadlock with a gloo thread that needs the GIL (seen as a rank hung at exit, intermittently): so
every reference the loop holds must be gone by then, and this checks it deterministically.

Usage: python -m torch.distributed.run --standalone --nproc-per-node 2 tests/train/ddp_teardown_probe.py
       [--force-ac-none] CONFIG --set ... --run-dir DIR
(--force-ac-none: auto AC's estimate forced to 'none', as in forced_ac_fallback.py)
"""

from __future__ import annotations

import gc
import sys


def main() -> int:
    import torch

    import trainwise.train.loop as loop
    from trainwise.cli import main as cli

    teardown = loop.teardown_distributed
    alive: list[int] = []

    def checked_teardown(dist) -> None:
        gc.collect()
        alive.append(sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects()))
        teardown(dist)

    loop.teardown_distributed = checked_teardown
    args = sys.argv[1:]
    if args[:1] == ["--force-ac-none"]:
        from forced_ac_fallback import force_auto_to_choose_none  # this script's folder is on sys.path

        force_auto_to_choose_none()
        args = args[1:]
    rc = cli(["train", *args])
    if alive != [0]:
        print(f"DDP wrappers alive at teardown: {alive}", file=sys.stderr)
        return 3
    return rc


if __name__ == "__main__":
    sys.exit(main())
