"""The recommendation must not hang on noise: a speed difference inside the measured spread goes to
the simpler variant; only passing variants are recommended; inconclusive ones are listed apart;
when the timing phase says the machine was too busy, no speed is claimed at all."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trainwise.bench.recommend import median_interval, recommend, summary_line


def row(
    label, step_ms, spread=0.02, policy="fp32", ac="none", verdict="pass", control=False, mem=100, n=30, seed=0, **extra
):
    """A finished variant whose timed steps scatter by `spread` (relative) around `step_ms`."""
    rng = np.random.default_rng(seed)
    samples = list(step_ms * (1 + spread * rng.standard_normal(n)))
    variant = {"precision.policy": policy, "memory.ac": ac}
    return {
        "label": label,
        "variant": variant,
        "config_hash": label,
        "kind": "trainwise",
        "is_control": control,
        "status": "completed",
        "precision": policy,
        "ac": ac,
        "median_step_ms": float(np.median(samples)),
        "tokens_per_s": 4096 / (float(np.median(samples)) / 1e3),
        "step_ms_samples": samples,
        "peak_memory_bytes": mem,
        "peak_activation_bytes": mem / 2,
        "final_val_loss": 2.0,
        "quality_verdict": "control" if control else verdict,
        "quality_detail": "d",
        "health_issues": [],
        **extra,
    }


def test_median_interval_matches_the_binomial_order_statistics():
    x = list(np.random.default_rng(1).normal(size=41))
    lo, hi = median_interval(x, 0.95)
    s = sorted(x)
    # coverage of [x_(k), x_(n+1-k)] is 1 - 2 P(Bin(n, 1/2) <= k - 1) >= 0.95
    k = s.index(lo) + 1
    assert s.index(hi) + 1 == len(s) + 1 - k
    assert 1 - 2 * stats.binom.cdf(k - 1, 41, 0.5) >= 0.95 > 1 - 2 * stats.binom.cdf(k, 41, 0.5)


def test_a_near_tie_in_speed_goes_to_the_simpler_variant():
    # bf16 is 2% faster, inside the spread of 30 noisy steps: the answer must not depend on which one the noise favoured
    for seed in range(5):
        rows = [row("fp32", 500, control=True, seed=seed), row("bf16-mixed", 490, policy="bf16-mixed", seed=seed + 10)]
        rec = recommend(rows, 0.0, 0.02, "cpu")
        assert rec["label"] == "fp32", seed
        reason = {r["label"]: r["reason"] for r in rec["rejected"]}["bf16-mixed"]
        assert "not clearly faster" in reason and "the simpler fp32 is recommended" in reason


def test_a_clear_speedup_wins():
    rows = [
        row("fp32", 500, control=True),
        row("bf16-mixed", 300, policy="bf16-mixed"),
        row("bf16-mixed, ac=full", 360, policy="bf16-mixed", ac="full", mem=40),
    ]
    rec = recommend(rows, 0.0, 0.02, "cpu")
    assert rec["label"] == "bf16-mixed" and rec["speedup_vs_fp32"] == pytest.approx(500 / 300, rel=0.02)
    lo, hi = rec["speedup_interval_vs_fp32"]
    assert lo < rec["speedup_vs_fp32"] < hi
    # a gain the user set as too small to matter goes to the simpler variant even when it is measured clearly
    assert recommend(rows, 0.0, 0.02, "cpu", min_gain=0.8)["label"] == "fp32"


def test_a_gain_no_bigger_than_the_drift_between_two_identical_runs_is_noise():
    # the control's second seed (the same work) ran 12% slower than the control: a shared machine drifted between runs;
    # bf16 measured 1.14x, with tight intervals, but that is within the drift, so the simpler fp32 stays
    seed = {
        **row("fp32 control (seed 1)", 560, spread=0.01),
        "kind": "control-seed",
        "quality_verdict": "noise floor",
        "median_step_ms": None,
        "tokens_per_s": None,
    }
    rows = [row("fp32", 500, spread=0.01, control=True), row("bf16-mixed", 440, spread=0.01, policy="bf16-mixed")]
    assert recommend(rows, 0.0, 0.02, "cpu")["label"] == "bf16-mixed"  # without the floor: clearly faster
    rec = recommend(rows + [seed], 0.0, 0.02, "cpu")
    assert rec["label"] == "fp32" and rec["speed_noise_floor"] == pytest.approx(0.12, abs=0.01)
    assert "beyond the speed noise floor 12" in {r["label"]: r["reason"] for r in rec["rejected"]}["bf16-mixed"]


def test_the_timing_phases_paired_ratios_are_used_when_every_candidate_has_one():
    # training runs drifted (bf16's steps look 1.3x faster), but the interleaved rounds pair each bf16 step with a
    # control step of the same moment: 0.97x to 1.02x of the control, a tie; and a drift floor is not added on top of
    # paired rounds
    rows = [
        row("fp32", 500, spread=0.01, control=True),
        row("bf16-mixed", 385, spread=0.01, policy="bf16-mixed"),
        row("bf16-mixed, ac=full", 300, spread=0.01, policy="bf16-mixed", ac="full"),
    ]
    rows[1]["speed_ratio_vs_control"] = {"median": 0.99, "ci95": [0.97, 1.02], "n_rounds": 10, "reliable": True}
    rows[2]["speed_ratio_vs_control"] = {"median": 0.60, "ci95": [0.58, 0.62], "n_rounds": 10, "reliable": True}
    rec = recommend(rows, 0.0, 0.02, "cpu", timing=RELIABLE)
    assert rec["speed_source"].startswith("timing phase") and rec["speed_noise_floor"] == 0.0
    assert rec["label"] == "bf16-mixed, ac=full" and rec["speedup_interval_vs_fp32"] == pytest.approx(
        [1 / 0.62, 1 / 0.58]
    )
    assert rec["speedup_vs_fp32"] == pytest.approx(1 / 0.60)
    del rows[2][
        "speed_ratio_vs_control"
    ]  # one candidate was not timed: every interval comes from the training runs then
    assert recommend(rows, 0.0, 0.02, "cpu", timing=RELIABLE)["speed_source"] == "training runs' timed steps"


RELIABLE = {"reliable": True, "unreliable_reason": None}
BUSY = {"reliable": False, "unreliable_reason": "timings unreliable: load 4.8 on 2 cores, 3.8 of it other processes'"}


def test_no_speed_claim_when_the_timing_phase_says_the_machine_was_too_busy():
    # issue 15: on a busy machine bf16-mixed "ran 80.08x slower than fp32" in its training run; the timing phase's
    # rounds were as busy, so neither the rounds nor the training runs may be quoted: the simplest passing variant is
    # recommended
    rows = [
        row("fp32", 5.0, control=True),
        row("bf16-mixed", 400.4, policy="bf16-mixed"),
        row("bf16-mixed, ac=full", 2.0, policy="bf16-mixed", ac="full"),
        row("fp16-mixed", 300.0, policy="fp16-mixed", verdict="fail"),
    ]
    for r in rows[1:]:
        r["speed_ratio_vs_control"] = {
            "median": r["median_step_ms"] / 5.0,
            "ci95": [r["median_step_ms"] / 6.0, r["median_step_ms"] / 4.0],
            "n_rounds": 10,
            "reliable": False,
            "note": BUSY["unreliable_reason"],
        }
    rec = recommend(rows, 0.0, 0.02, "cpu", timing=BUSY)
    assert rec["label"] == "fp32" and rec["speedup_vs_fp32"] is None and rec["speedup_interval_vs_fp32"] is None
    assert rec["speed_source"] == "none" and rec["speed_unreliable"] == BUSY["unreliable_reason"]
    reasons = {r["label"]: r["reason"] for r in rec["rejected"]}
    assert "speeds not compared (timings unreliable: load 4.8 on 2 cores" in reasons["bf16-mixed"]
    assert all("slower" not in reason and "faster" not in reason for reason in reasons.values()), reasons
    assert "the simplest passing variant: speeds not compared (timings unreliable: load 4.8" in summary_line(rec)
    # the same rows on a quiet machine: the clearly faster variant wins, with its figure
    for r in rows[1:]:
        r["speed_ratio_vs_control"].update({"reliable": True, "note": "quotable"})
    quiet = recommend(rows, 0.0, 0.02, "cpu", timing=RELIABLE)
    assert (
        quiet["label"] == "bf16-mixed, ac=full"
        and "x slower than fp32 on this cpu" in {r["label"]: r["reason"] for r in quiet["rejected"]}["bf16-mixed"]
    )


def test_a_ratio_whose_interval_is_too_wide_decides_nothing_and_is_not_quoted():
    # the machine's load was within bench.max_load_per_core, but bf16's paired rounds scattered from 0.17x to 1.53x of
    # the control
    rows = [row("fp32", 500, control=True), row("bf16-mixed", 250, policy="bf16-mixed")]
    rows[1]["speed_ratio_vs_control"] = {
        "median": 0.52,
        "ci95": [0.17, 1.53],
        "n_rounds": 7,
        "reliable": False,
        "note": (
            "timings unreliable: the 95% interval of step time of bf16-mixed / the fp32 control, 0.17x to 1.53x, "
            "reaches beyond ±10%"
        ),
    }
    rec = recommend(rows, 0.0, 0.02, "cpu", timing=RELIABLE)
    reason = {r["label"]: r["reason"] for r in rec["rejected"]}["bf16-mixed"]
    assert rec["label"] == "fp32" and rec["speed_source"].startswith("timing phase")
    assert (
        reason
        == "bf16-mixed: not clearly faster than fp32 (its speed figure is not quoted: "
        + rows[1]["speed_ratio_vs_control"]["note"]
        + "): the simpler fp32 is recommended"
    )
    # clearly faster by the same kind of interval, but still too wide to quote: recommended, without a figure
    rows[1]["speed_ratio_vs_control"].update({"median": 0.5, "ci95": [0.4, 0.7]})
    rec = recommend(rows, 0.0, 0.02, "cpu", timing=RELIABLE)
    assert (
        rec["label"] == "bf16-mixed"
        and rec["speedup_vs_fp32"] is None
        and "speed not quoted (timings unreliable" in summary_line(rec)
    )


def test_emulated_fp8_is_judged_for_quality_but_never_recommended_for_speed():
    fp8 = row(
        "fp8-tensorwise",
        100,
        policy="fp8-tensorwise",
        emulated="emulated on this cpu (real fp8 casts, no fp8 matmul units): ...",
    )
    rec = recommend([row("fp32", 500, control=True), fp8], 0.0, 0.02, "cpu")
    assert rec["label"] == "fp32"
    reason = {r["label"]: r["reason"] for r in rec["rejected"]}["fp8-tensorwise"]
    assert (
        reason.startswith("fp8-tensorwise: emulated on this cpu")
        and "quality pass" in reason
        and "slower" not in reason
    )


def test_among_variants_tied_with_the_fastest_the_simplest_wins():
    # ac=full as fast as ac=none within the noise (and bf16 clearly faster than both): bf16 without AC is the simpler of
    # the tied
    rows = [
        row("fp32", 500, control=True),
        row("bf16-mixed, ac=full", 301, policy="bf16-mixed", ac="full", mem=40, seed=3),
        row("bf16-mixed", 300, policy="bf16-mixed", seed=4),
    ]
    assert recommend(rows, 0.0, 0.02, "cpu")["label"] == "bf16-mixed"


def test_only_passing_variants_are_recommended_and_inconclusive_ones_are_listed_apart():
    rows = [
        row("fp32", 500, control=True),
        row(
            "bf16-mixed",
            300,
            policy="bf16-mixed",
            verdict="inconclusive",
            quality_settle="about 900 validation examples would settle it",
        ),
        row("fp8-tensorwise", 200, policy="fp8-tensorwise", verdict="fail"),
        row("fp16-mixed", 350, policy="fp16-mixed", verdict="not compared"),
    ]
    rec = recommend(rows, 0.0, 0.02, "cpu")
    assert rec["label"] == "fp32"
    assert [r["label"] for r in rec["inconclusive"]] == ["bf16-mixed"] and "900 validation examples" in rec[
        "inconclusive"
    ][0]["settle"]
    reasons = {r["label"]: r["reason"] for r in rec["rejected"]}
    assert "quality fail" in reasons["fp8-tensorwise"] and "quality not compared" in reasons["fp16-mixed"]
    assert "bf16-mixed" not in reasons


def test_pruned_and_noise_floor_rows_are_never_candidates():
    pruned = {
        **row("fp16-mixed", 16000, policy="fp16-mixed"),
        "status": "pruned",
        "tokens_per_s": None,
        "median_step_ms": None,
        "reason": "32x slower than fp32 on this cpu (measured over 2 steps)",
    }
    seed = {**row("fp32 control (seed 1)", 400), "kind": "control-seed", "quality_verdict": "noise floor"}
    rec = recommend([row("fp32", 500, control=True), pruned, seed], 0.0, 0.02, "cpu")
    reasons = {r["label"]: r["reason"] for r in rec["rejected"]}
    assert rec["label"] == "fp32"
    assert reasons["fp16-mixed"] == "fp16-mixed: pruned: 32x slower than fp32 on this cpu (measured over 2 steps)"
    assert "noise floor" in reasons["fp32 control (seed 1)"]
