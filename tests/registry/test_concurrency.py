"""Two processes promoting different versions to one alias at once: nothing lost or interleaved."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.realruns import copy_run

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "registry_concurrency.py"


def _bench():
    spec = importlib.util.spec_from_file_location("registry_concurrency", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_two_promoters_five_rounds(tmp_path, tiny_runs):
    bench = _bench()
    versions = [copy_run(tiny_runs.trained(key), tmp_path / key) for key in ("good", "good_seed1")]  # real runs
    t = bench.run_trial(rounds=5, lock=True, workdir=tmp_path, run_dirs=versions)
    assert t["attempts"] == 10 and t["errors"] == 0
    assert t["moves_reported"] == t["moves_recorded"] > 0
    assert t["lost_entries"] == 0 and t["duplicate_seqs"] == 0 and t["chain_problems"] == 0, t["first_problems"]
    assert t["final_alias_equals_last_move"]
