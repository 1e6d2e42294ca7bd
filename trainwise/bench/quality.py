"""The bench's quality verdicts: the fp32 control's seed-to-seed noise floor, and a three-valued
verdict of each candidate against the control with that floor in view (docs/bench.md, "Quality").

The margin a candidate must stay within is

    margin = bench.tolerance x the control's validation loss + the noise floor

where the noise floor is how far apart the fp32 control's seeds land on the same validation
examples (the largest difference between any two). A difference the size of what two fp32 seeds
differ by is chance, not a loss of quality; beyond it, the tolerance is what the user accepts.
On the paired bootstrap bounds of the candidate's worsening over the control (same examples):

    pass          the upper confidence bound <= margin   (shown within the margin)
    fail          the lower confidence bound >  margin   (shown worse)
    inconclusive  neither: more examples would settle it (`examples_needed`)

>>> verdict(lower=-0.01, upper=0.02, margin=0.03), verdict(0.04, 0.09, 0.03), verdict(0.01, 0.05, 0.03)
('pass', 'fail', 'inconclusive')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from trainwise.evaluate.compare import compare_predictions
from trainwise.evaluate.gate import Gate, Rule

N_BOOT = 1000
GATE_METRIC = {"lm": "loss", "classification": "log_loss"}
PRIMARY_METRIC = {"lm": "next_byte_accuracy", "classification": "accuracy"}


def verdict(lower: float, upper: float, margin: float) -> str:
    if upper <= margin:
        return "pass"
    if lower > margin:
        return "fail"
    return "inconclusive"


def _compare(base: pd.DataFrame, cand: pd.DataFrame, metric: str, margin: float, confidence: float):
    return compare_predictions(
        base, cand, gate=Gate([Rule(metric, max(margin, 0.0), confidence)]), n_boot=N_BOOT, seed=0
    )


def worsening_bounds(base: pd.DataFrame, cand: pd.DataFrame, metric: str, margin: float, confidence: float) -> dict:
    """Point worsening of `metric` (candidate vs base, positive = worse) with its one-sided lower and
    upper confidence bounds from the paired bootstrap, and the comparison's point values.

    Uses the gate's `upper_bound` when it reports one (the three-valued gate); otherwise the upper
    bound is minus the lower bound of the reversed comparison, which resamples the same examples."""
    cmp = _compare(base, cand, metric, margin, confidence)
    rule = cmp.rules[0]
    if rule.get("lower_bound") is None:
        return {"applicable": False, "detail": rule.get("detail"), "n": cmp.n, "deltas": cmp.deltas}
    upper = rule.get("upper_bound")
    if upper is None:
        upper = (
            0.0 - _compare(cand, base, metric, margin, confidence).rules[0]["lower_bound"]
        )  # 0.0 - x: no "-0.0" for identical runs
    return {
        "applicable": True,
        "worsening": rule["worsening"],
        "lower_bound": rule["lower_bound"],
        "upper_bound": upper,
        "n_needed": rule.get("n_needed"),
        "n": cmp.n,
        "deltas": cmp.deltas,
    }


def noise_floor(frames: list[pd.DataFrame], task: str, confidence: float) -> dict | None:
    """How far apart the control's seeds land on the same validation examples: per metric, the
    value of each seed and the largest difference between two. None with fewer than two seeds."""
    if len(frames) < 2:
        return None
    metrics = (GATE_METRIC[task], PRIMARY_METRIC[task])
    values = {m: [] for m in metrics}
    for other in frames[1:]:
        deltas = _compare(frames[0], other, metrics[0], 0.0, confidence).deltas
        for m in metrics:
            if not values[m]:
                values[m].append(deltas[m]["baseline"])
            values[m].append(deltas[m]["candidate"])
    return {m: {"per_seed": v, "floor": max(v) - min(v)} for m, v in values.items()}


def examples_needed(n: int, worsening: float, lower: float, upper: float, margin: float) -> int | None:
    """Examples that would settle an inconclusive verdict if the point worsening stayed where it is:
    the bound's distance from the point shrinks as 1/sqrt(n). None when the point sits on the margin."""
    if worsening <= margin:
        half, room = upper - worsening, margin - worsening
    else:
        half, room = worsening - lower, worsening - margin
    if room <= 0 or half <= 0:
        return None
    return math.ceil(round(n * (half / room) ** 2, 6))  # round off float noise before the ceiling


def settle_advice(
    n: int, n_needed: int | None, examples_per_batch: int, val_examples: int | None, eval_batches: int
) -> str:
    """What would settle an inconclusive verdict, in the user's terms."""
    if n_needed is None:
        return (
            "its worsening sits on the margin: no number of validation examples would settle it; compare on the test "
            "split"
        )
    batches = math.ceil(n_needed / examples_per_batch)
    if val_examples is not None and n_needed > val_examples:
        return (
            f"about {n_needed} validation examples would settle it ({n} compared), more than the validation split's "
            f"{val_examples}: compare the two runs on the test split (trainwise compare CONTROL_RUN CANDIDATE_RUN)"
        )
    return (
        f"about {n_needed} validation examples would settle it ({n} compared): rerun with --set "
        f"train.eval_batches={max(batches, eval_batches + 1)}"
    )


@dataclass
class QualityRule:
    """What every candidate of one bench is judged by (margin in the metric's units)."""

    metric: str
    primary: str
    margin: float
    control_loss: float
    tolerance: float
    floor: float
    confidence: float
    examples_per_batch: int
    eval_batches: int


def judge(
    base: pd.DataFrame, cand: pd.DataFrame, rule: QualityRule, rise: float | None, val_examples: int | None
) -> dict:
    """A candidate's verdict against the control and the fields the report shows of it."""
    b = worsening_bounds(base, cand, rule.metric, rule.margin, rule.confidence)
    if not b["applicable"]:
        return {"quality_verdict": "not compared", "quality_detail": b["detail"]}
    loss = rule.control_loss
    out = {
        "quality_verdict": verdict(b["lower_bound"], b["upper_bound"], rule.margin),
        "quality_margin": rule.margin,
        "quality_lower_bound": b["lower_bound"],
        "quality_upper_bound": b["upper_bound"],
        "quality_worsening": b["worsening"],
        "quality_n": b["n"],
        "primary_metric": rule.primary,
        "primary_delta": b["deltas"].get(rule.primary, {}).get("delta"),
        "quality_margin_rise": rule.margin / loss,
        "quality_lower_rise": b["lower_bound"] / loss,
        "quality_upper_rise": b["upper_bound"] / loss,
    }
    out["quality_detail"] = (
        f"validation loss {'n/a' if rise is None else f'{rise:+.1%}'} vs the control; paired {rule.confidence:.0%} "
        f"bounds of the rise {b['lower_bound'] / loss:+.1%} to {b['upper_bound'] / loss:+.1%}, margin "
        f"{rule.margin / loss:.1%} (tolerance {rule.tolerance:.0%} + noise floor {rule.floor / loss:.1%})"
    )
    if out["quality_verdict"] == "inconclusive":
        need = (
            b["n_needed"]
            if b["n_needed"] is not None
            else examples_needed(b["n"], b["worsening"], b["lower_bound"], b["upper_bound"], rule.margin)
        )
        need = (
            int(math.ceil(need)) if need is not None and math.isfinite(need) else None
        )  # the gate says inf when nothing settles it
        out["quality_n_needed"] = need
        out["quality_settle"] = settle_advice(b["n"], need, rule.examples_per_batch, val_examples, rule.eval_batches)
    return out
