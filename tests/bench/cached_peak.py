"""The bench's matmul peaks from `trainwise info`'s cached measurement of this machine instead of a
fresh one: a fresh one takes 15-35 s on the 2-core CPU (mostly fp16 at ~1 GFLOP/s), and the bench
tests run several benches. MFU is then divided by a real peak of this machine, measured earlier.

`python -m tests.bench.cached_peak ARGS` runs the `trainwise` command line that way (for tests
that need a bench in its own process group, e.g. to interrupt it as a terminal's Ctrl-C does)."""

from __future__ import annotations


def cached_peak_info(cfg) -> dict:
    """This machine's matmul peaks as `trainwise info` last measured them (measured now if never)."""
    from trainwise.env import collect_info, pick_device

    return collect_info(pick_device(cfg.train.device))


if __name__ == "__main__":
    import sys

    import trainwise.bench.bench
    from trainwise.cli import main

    trainwise.bench.bench.peak_info = cached_peak_info
    sys.exit(main(sys.argv[1:]))
