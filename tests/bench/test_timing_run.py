"""A real tiny bench with its timing phase: every finished variant and the plain-PyTorch baseline
are timed in interleaved rounds in their own processes; a timing process that dies (here the
baseline's) leaves its row with the training run's times and says so, while the others are timed;
the report shows how speeds were measured and never an MFU above 100%. Nothing asserts a speed."""

from __future__ import annotations

import json

import pytest

from trainwise.bench.bench import run_bench
from trainwise.bench.timing_worker import FAULT_ENV
from trainwise.errors import ConfigError

TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.context=32", "train.steps=6", "train.warmup_steps=0",
        "train.eval_every=3", "train.eval_batches=4", "train.checkpoint_every=0", "data.max_corpus_bytes=200000",
        "train.threads=1", "log.progress=false", "bench.timing_rounds=6", "bench.timing_steps_per_round=1"]


BASELINE = "plain PyTorch (fp32)"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("timing") / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv(FAULT_ENV, f"{BASELINE}=crash")
    lines = []
    try:
        result = run_bench("configs/lm-tiny.toml", [], ["memory.ac=full"], TINY, out, log=lines.append)
    finally:
        mp.undo()
    return out, result, lines


@pytest.mark.slow
def test_every_finished_variant_is_timed_in_interleaved_rounds(bench):
    out, result, lines = bench
    timing = json.loads((out / "timing.json").read_text())
    assert timing["order"] == ["fp32 control", "ac=full", BASELINE]
    assert timing["rounds"] == 6 and len(timing["load"]) == 6
    assert set(timing["load"][0]) == {"round", "loadavg_per_core_before", "loadavg_per_core_after", "steal_share"}
    rows = {r["label"]: r for r in result["results"]}
    for label in ("fp32 control", "ac=full"):
        assert rows[label]["timing_source"] == "timing phase: 6 steps in 6 interleaved rounds", rows[label]
        assert rows[label]["median_step_ms"] > 0 and rows[label]["tokens_per_s"] > 0
    entry = next(v for v in timing["variants"].values() if v["label"] == "ac=full")
    assert entry["device"] == "cpu" and len(entry["step_ms"]) == 6 and all(len(r) == 1 for r in entry["step_ms"])
    ratio = rows["ac=full"]["speed_ratio_vs_control"]
    assert ratio["n_rounds"] == 6 and ratio["median"] > 0 and ratio["ci95"][0] <= ratio["median"] <= ratio["ci95"][1]
    assert ratio["reliable"] == (timing["reliable"] and ratio["note"].startswith("step time of ac=full"))
    assert ratio["reliable"] or ratio["note"].startswith("timings unreliable")


@pytest.mark.slow
def test_a_timing_process_that_dies_falls_back_to_the_training_times(bench):
    out, result, _ = bench
    row = next(r for r in result["results"] if r["label"] == BASELINE)
    assert row["status"] == "completed" and row["median_step_ms"] > 0
    assert row["timing_source"].startswith("training run (the timing process killed by signal 9")
    assert result["timing"]["variants"][row["config_hash"]]["device"] == "cpu"  # it was set up on the variants' device
    overhead = result["timing"]["baseline_overhead"]
    assert overhead["n_rounds"] == 0 and not overhead["reliable"] and result["recommendation"]["trainwise_overhead_vs_plain_pytorch"] is None


@pytest.mark.slow
def test_report_says_how_speeds_were_measured_and_caps_mfu(bench):
    out, result, _ = bench
    rec, timing = result["recommendation"], result["timing"]
    report = (out / "report.md").read_text()
    assert "speeds from 6 interleaved timing rounds x 1 steps after training" in report and "step time vs control (95% CI)" in report
    # the baseline's timing process died: no paired round, so no overhead figure, and the report says why
    assert rec["trainwise_overhead_vs_plain_pytorch"] is None
    assert "trainwise's step time vs a plain PyTorch loop: step time of the fp32 control / plain PyTorch: no round timed both" in report
    if not timing["reliable"]:
        assert timing["unreliable_reason"] in report
    for r in result["results"]:
        assert r["mfu"] is None or 0 < r["mfu"] <= 1, r


def test_repeats_is_retired_with_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="bench.repeats = 3: retired.*bench.timing_rounds"):
        run_bench("configs/lm-tiny.toml", ["memory.ac=none,full"], [], TINY, tmp_path / "out", repeats=3)
    assert not (tmp_path / "out").exists()
