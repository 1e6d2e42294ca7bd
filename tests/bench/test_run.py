"""One real bench of a tiny lm, start to end, in worker processes: a crash and an out-of-memory are
recorded while the others finish; a sabotaged learning rate fails the quality gate while an
identical variant passes; emulated fp8 is trained and gated but neither pruned nor timed; every
finished variant and the plain-PyTorch baseline are timed in interleaved rounds, and a timing
process that dies (the sabotaged variant's) leaves its row with the training run's times while the
others are timed; the report says how speeds were measured and never shows an MFU above 100%; a
rerun skips what finished (and measures the noise floor the first run could not: the control's
second seed was the variant made to run out of memory); the report renders in headless Chromium.
Nothing asserts a speed."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.bench.cached_peak import cached_peak_info
from trainwise.bench import timing_worker
from trainwise.bench.bench import run_bench
from trainwise.bench.worker import FAULT_ENV
from trainwise.errors import ConfigError

TINY = [
    "model.d_model=32",
    "model.n_layers=1",
    "model.n_heads=2",
    "model.context=32",
    "train.steps=8",
    "train.warmup_steps=0",
    "train.eval_every=4",
    "train.eval_batches=8",
    "train.checkpoint_every=0",
    "data.max_corpus_bytes=400000",
    "train.threads=1",
    "log.progress=false",
    "bench.timing_rounds=6",
    "bench.timing_steps_per_round=1",
]
VARIANTS = [
    "memory.ac=full",  # identical numerics to the control: must pass the gate
    "train.lr=0.00001",  # sabotaged learning rate: must fail it; its timing process is made to die
    "model.dropout=0.1",  # made to crash (SIGKILL, like the OOM killer)
    "train.seed=1",  # made to raise MemoryError; also the control's second seed (the noise floor)
    "precision.policy=fp8-tensorwise",
]  # emulated FP8 on CPU: trains, predicts, is gated; not pruned, not timed
BASELINE = "plain PyTorch (fp32)"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv(FAULT_ENV, "dropout=0.1=crash;seed=1=oom")
    mp.setenv(timing_worker.FAULT_ENV, "lr=0.00001=crash")
    mp.setattr("trainwise.bench.bench.peak_info", cached_peak_info)
    lines = []
    try:
        first = run_bench("configs/lm-tiny.toml", [], VARIANTS, TINY, out, log=lines.append)
    finally:
        mp.undo()
    return out, first, lines


def by_label(rows):
    return {r["label"]: r for r in rows}


@pytest.mark.slow
def test_crash_is_recorded_and_the_others_complete(bench):
    out, first, _ = bench
    rows = by_label(json.loads((out / "results.json").read_text()))
    assert rows["dropout=0.1"]["status"] == "crashed" and "signal 9" in rows["dropout=0.1"]["reason"]
    assert rows["seed=1"]["status"] == "oom" and "out of memory" in rows["seed=1"]["reason"]
    for label in ("fp32 control", "ac=full", "lr=0.00001", BASELINE):
        assert rows[label]["status"] == "completed", rows[label]
        assert rows[label]["median_step_ms"] > 0 and rows[label]["tokens_per_s"] > 0
    assert rows["fp32 control"]["mfu"] > 0 and rows["fp32 control"]["peak_activation_bytes"] > 0
    fp8 = rows["fp8-tensorwise"]
    assert (
        fp8["status"] == "completed"
        and fp8["quality_verdict"] in ("pass", "fail", "inconclusive")
        and "bf16-equivalent" in fp8["mfu_basis"]
    )
    assert fp8["emulated"].startswith("emulated on this cpu") and fp8["timing_source"].startswith("training run")
    for key in (
        "variant",
        "status",
        "median_step_ms",
        "tokens_per_s",
        "mfu",
        "peak_activation_bytes",
        "final_val_loss",
        "quality_verdict",
    ):
        assert all(key in r for r in rows.values())


@pytest.mark.slow
def test_sabotaged_lr_fails_the_gate_and_an_identical_variant_passes(bench):
    out, _, _ = bench
    rows = by_label(json.loads((out / "results.json").read_text()))
    assert rows["ac=full"]["quality_verdict"] == "pass"
    assert rows["lr=0.00001"]["quality_verdict"] == "fail"
    rec = json.loads((out / "recommendation.json").read_text())
    reasons = {r["label"]: r["reason"] for r in rec["rejected"]}
    assert "quality fail: validation loss +" in reasons["lr=0.00001"] and "margin" in reasons["lr=0.00001"]
    assert rows["lr=0.00001"]["quality_lower_bound"] > rows["lr=0.00001"]["quality_margin"]
    assert rows["ac=full"]["quality_upper_bound"] <= rows["ac=full"]["quality_margin"]
    assert reasons["fp8-tensorwise"].startswith("fp8-tensorwise: emulated on this cpu")
    assert rec["label"] in ("fp32 control", "ac=full")
    assert "speedup_vs_fp32" in rec and "memory_saving_vs_fp32" in rec


@pytest.mark.slow
def test_finished_variants_are_timed_in_interleaved_rounds(bench):
    out, result, _ = bench
    timing = json.loads((out / "timing.json").read_text())
    # not the crashed, the out-of-memory one or emulated fp8
    assert timing["order"] == ["fp32 control", "ac=full", "lr=0.00001", BASELINE]
    assert timing["rounds"] == 6 and len(timing["load"]) == 6
    assert set(timing["load"][0]) == {"round", "loadavg_per_core_before", "loadavg_per_core_after", "steal_share"}
    rows = by_label(result["results"])
    for label in ("fp32 control", "ac=full", BASELINE):
        assert rows[label]["timing_source"] == "timing phase: 6 steps in 6 interleaved rounds", rows[label]
    entry = next(v for v in timing["variants"].values() if v["label"] == "ac=full")
    assert entry["device"] == "cpu" and len(entry["step_ms"]) == 6 and all(len(r) == 1 for r in entry["step_ms"])
    ratio = rows["ac=full"]["speed_ratio_vs_control"]
    assert ratio["n_rounds"] == 6 and ratio["median"] > 0 and ratio["ci95"][0] <= ratio["median"] <= ratio["ci95"][1]
    assert ratio["reliable"] == (timing["reliable"] and ratio["note"].startswith("step time of ac=full"))
    assert ratio["reliable"] or ratio["note"].startswith("timings unreliable")
    overhead = timing["baseline_overhead"]
    assert (
        overhead["n_rounds"] == 6
        and (result["recommendation"]["trainwise_overhead_vs_plain_pytorch"] is not None) == overhead["reliable"]
    )


@pytest.mark.slow
def test_a_timing_process_that_dies_falls_back_to_the_training_times(bench):
    _, result, _ = bench
    row = by_label(result["results"])["lr=0.00001"]
    assert row["status"] == "completed" and row["median_step_ms"] > 0
    assert row["timing_source"].startswith("training run (the timing process killed by signal 9")
    assert result["timing"]["variants"][row["config_hash"]]["device"] == "cpu"  # it was set up on the variants' device


@pytest.mark.slow
def test_report_says_how_speeds_were_measured_and_caps_mfu(bench):
    out, result, _ = bench
    rec, timing = result["recommendation"], result["timing"]
    report = (out / "report.md").read_text()
    assert (
        "speeds from 6 interleaved timing rounds x 1 steps after training; load " in report
        and "step time vs control (95% CI)" in report
    )
    assert "trainwise's step time vs a plain PyTorch loop: " in report
    if timing["reliable"]:
        assert (
            "timings reliable" in report or "speed ratios scattered too widely to quote (bench.max_ratio_ci)" in report
        )
    else:
        # a candidate recommended: "speed not quoted (...)"; the control recommended as the simplest
        # passing variant: "speeds not compared (...)" (docs/bench.md)
        assert timing["unreliable_reason"] in report and rec["speedup_vs_fp32"] is None
        assert "speed not quoted" in report or "speeds not compared" in report
    for r in result["results"]:
        assert r["mfu"] is None or 0 < r["mfu"] <= 1, r


@pytest.mark.slow
def test_rerun_skips_finished_variants_and_reruns_failed_ones(bench, monkeypatch):
    out, _, _ = bench
    monkeypatch.setattr("trainwise.bench.bench.peak_info", cached_peak_info)
    before = {p: p.stat().st_mtime_ns for p in out.glob("variants/*/run.json")}
    monkeypatch.delenv(FAULT_ENV, raising=False)
    floor_before = json.loads((out / "recommendation.json").read_text())["meta"]["noise_floor"]
    assert not floor_before["measured"] and "seed=1: oom" in floor_before["reason"]  # the second seed ran out of memory
    lines = []
    # bench.timing_rounds is not part of a variant's identity: the same bench, here without its timing phase
    second = run_bench("configs/lm-tiny.toml", [], VARIANTS, TINY + ["bench.timing_rounds=0"], out, log=lines.append)
    skipped = [line for line in lines if "skipped" in line]
    assert len(skipped) == 5, lines  # control, ac=full, lr, fp8 and the baseline finished the first time
    floor = second["meta"]["noise_floor"]
    assert floor["measured"] and floor["seeds"] == 2 and floor["margin"] > floor["tolerance_abs"]
    rows = by_label(json.loads((out / "results.json").read_text()))
    # the crash and the out-of-memory are not skipped: run again, without their faults now
    assert rows["dropout=0.1"]["status"] == "completed" and rows["seed=1"]["status"] == "completed"
    assert rows["fp32 control"]["status"] == "completed"
    for p, t in before.items():
        if "dropout" not in p.parent.name and "seed" not in p.parent.name:
            assert p.stat().st_mtime_ns == t
    # without the timing phase: speeds from the training runs, and no overhead from two unpaired runs
    assert second["timing"] is None and rows["ac=full"]["timing_source"].startswith(
        "training run (the timing phase did not run)"
    )
    assert second["recommendation"]["trainwise_overhead_vs_plain_pytorch"] is None
    assert second["recommendation"]["speed_source"] == "training runs' timed steps"


def test_repeats_is_retired_with_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="bench.repeats = 3: retired.*bench.timing_rounds"):
        run_bench("configs/lm-tiny.toml", ["memory.ac=none,full"], [], TINY + ["bench.repeats=3"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    chromium() is None, reason="Debian's chromium is not installed (scripts/install-test-deps.sh installs it)"
)
@pytest.mark.slow
def test_report_renders_in_headless_chromium(bench, tmp_path):
    out, _, _ = bench
    page = (out / "report.html").resolve()
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched
    assert html.count("data:image/png;base64,") == 3
    shot = tmp_path / "report.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,2400",
    ]
    proc = subprocess.run(
        [chromium(), *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    errors = [
        line
        for line in proc.stderr.splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and "error" in line.lower())
    ]
    assert not errors, errors
    dom = subprocess.run(
        [chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert "Recommendation" in dom and "fp32 control" in dom
