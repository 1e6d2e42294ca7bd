"""Three-valued quality verdicts with the control's seed-to-seed noise floor in the margin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from trainwise.bench.quality import examples_needed, noise_floor, settle_advice, verdict, worsening_bounds


def lm_frame(loss: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Per-window predictions as the bench's worker writes them for an lm (id, loss, correct, n_positions)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"id": np.arange(len(loss)), "loss": loss, "correct": rng.uniform(0.3, 0.5, len(loss)), "n_positions": 128}
    )


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = 2.0 + rng.normal(0, 0.3, 400)
    seed1 = base + 0.06 + rng.normal(0, 0.005, 400)  # another seed of the control: 0.06 apart (3% of the loss)
    cand = base + 0.07 + rng.normal(0, 0.005, 400)  # 0.07 worse: beyond the 2% tolerance, within tolerance + floor
    return lm_frame(base), lm_frame(seed1, 1), lm_frame(cand, 2)


def test_verdict_is_three_valued():
    assert verdict(-0.01, 0.02, 0.03) == "pass"
    assert verdict(0.04, 0.09, 0.03) == "fail"
    assert verdict(0.01, 0.05, 0.03) == "inconclusive"  # too little evidence is never a pass


def test_bounds_match_scipy_one_sided_paired_t_bounds(frames):
    base, _, cand = frames
    b = worsening_bounds(base, cand, "loss", 0.04, 0.95)
    # reference: one-sided 95% bounds of the mean paired difference, Student t (scipy); the bench's bounds come from the
    # gate's paired interval (or a paired bootstrap): for 400 normal differences they agree within a tenth of the
    # half-width
    d = cand["loss"].to_numpy() - base["loss"].to_numpy()
    half = stats.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert b["worsening"] == pytest.approx(d.mean())
    assert b["upper_bound"] == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert b["lower_bound"] == pytest.approx(d.mean() - half, abs=0.1 * half)


def test_a_difference_within_the_noise_floor_is_not_a_loss(frames):
    base, seed1, cand = frames
    floor = noise_floor([base, seed1], "lm", 0.95)
    assert floor["loss"]["floor"] == pytest.approx(seed1["loss"].mean() - base["loss"].mean())
    assert floor["loss"]["per_seed"][0] == pytest.approx(base["loss"].mean())
    assert "next_byte_accuracy" in floor
    tolerance_abs = 0.02 * base["loss"].mean()
    b = worsening_bounds(base, cand, "loss", tolerance_abs, 0.95)
    # judged by the tolerance alone (as before the floor), the candidate fails ...
    assert verdict(b["lower_bound"], b["upper_bound"], tolerance_abs) == "fail"
    # ... but it differs from the control by about what two fp32 seeds differ by: with the floor in the margin it passes
    assert verdict(b["lower_bound"], b["upper_bound"], tolerance_abs + floor["loss"]["floor"]) == "pass"


def test_no_floor_from_one_seed(frames):
    assert noise_floor([frames[0]], "lm", 0.95) is None


def test_examples_needed_shrinks_the_bound_as_one_over_sqrt_n():
    # point 0.02, upper bound 0.05 (half-width 0.03), margin 0.03: the half-width must shrink to 0.01 -> 9x the examples
    assert examples_needed(100, 0.02, -0.01, 0.05, 0.03) == 900
    # point 0.05 above the margin 0.03, lower bound 0.01: half-width 0.04 must shrink to 0.02 -> 4x
    assert examples_needed(100, 0.05, 0.01, 0.09, 0.03) == 400
    assert examples_needed(100, 0.03, 0.0, 0.06, 0.03) is None


def test_settle_advice_names_the_field_or_the_test_split():
    assert "--set train.eval_batches=29" in settle_advice(128, 900, 32, 5000, 4)
    assert "test split" in settle_advice(128, 9000, 32, 5000, 4)


def test_an_inconclusive_candidate_says_what_would_settle_it():
    from trainwise.bench.quality import QualityRule, judge

    rng = np.random.default_rng(3)
    base = 2.0 + rng.normal(0, 0.3, 128)
    cand = (
        base + 0.03 + rng.normal(0, 0.3, 128)
    )  # 0.03 worse on average, but per-window noise of 0.3: the bounds straddle 0.04
    rule = QualityRule(
        "loss",
        "next_byte_accuracy",
        margin=0.04,
        control_loss=2.0,
        tolerance=0.02,
        floor=0.0,
        confidence=0.95,
        examples_per_batch=32,
        eval_batches=4,
    )
    out = judge(lm_frame(base), lm_frame(cand, 1), rule, 0.015, val_examples=100_000)
    assert out["quality_verdict"] == "inconclusive"
    assert out["quality_lower_bound"] < 0.04 < out["quality_upper_bound"]
    assert (
        out["quality_n_needed"] > 128
        and f"--set train.eval_batches={-(-out['quality_n_needed'] // 32)}" in out["quality_settle"]
    )
