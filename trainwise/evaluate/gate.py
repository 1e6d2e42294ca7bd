"""Quality gates: rules on paired metric changes, read from TOML, and their three-valued verdict.

Each rule bounds the *worsening* of one metric (baseline - candidate for a higher-is-better
metric, candidate - baseline otherwise) with one-sided confidence bounds at the rule's
confidence (`trainwise.evaluate.intervals` says which interval for which metric):

- pass: shown within tolerance. The upper bound of the worsening is <= `tolerance` (a
  non-inferiority test: a candidate worse by more than the tolerance passes at most
  1 - confidence of the time).
- fail: shown worse. The lower bound of the worsening is > `tolerance`.
- inconclusive: neither. Too little evidence is never a pass: the verdict says how many examples
  would settle it at the variance observed, n_needed = n (z se / |tolerance - worsening|)^2.

The gate's verdict: fail if any rule fails; else inconclusive if any rule is inconclusive; else
pass. `benchmarks/gate_calibration.py` measures the rates by simulation.

Tolerances are in the metric's own units: accuracy 0.005 is half a point, loss is nats per byte.
Slice rules apply to every slice with at least `min_count` examples, with the confidence
Bonferroni-corrected over the slices checked, and combine their slices' verdicts the same way.

```toml
[[rule]]
metric = "accuracy"      # accuracy drop <= 0.5 points, shown at 95% confidence
tolerance = 0.005
confidence = 0.95

[[rule]]
metric = "accuracy"      # no slice with n >= 100 worse by more than 2 points
scope = "slices"
min_count = 100
tolerance = 0.02
```
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from trainwise.config import read_toml
from trainwise.errors import ConfigError

# metric -> (task, True when higher is better)
METRICS = {
    "accuracy": ("classification", True),
    "balanced_accuracy": ("classification", True),
    "precision_macro": ("classification", True),
    "recall_macro": ("classification", True),
    "f1_macro": ("classification", True),
    "roc_auc": ("classification", True),
    "log_loss": ("classification", False),
    "brier": ("classification", False),
    "ece": ("classification", False),
    "loss": ("lm", False),
    "bits_per_byte": ("lm", False),
    "next_byte_accuracy": ("lm", True),
}
SCOPES = ("overall", "slices")
RULE_KEYS = ("metric", "tolerance", "confidence", "scope", "min_count", "name")
STATUSES = ("pass", "fail", "inconclusive", "not applicable")
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}  # 2 stays bad input (TrainwiseError)


@dataclass
class Rule:
    metric: str
    tolerance: float
    confidence: float = 0.95
    scope: str = "overall"
    min_count: int = 100
    name: str = ""

    def __post_init__(self):
        if self.metric not in METRICS:
            close = difflib.get_close_matches(self.metric, list(METRICS), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"gate rule: unknown metric {self.metric!r}{hint} (known: {', '.join(METRICS)})")
        if self.scope not in SCOPES:
            raise ConfigError(
                f"gate rule on {self.metric}: scope = {self.scope!r}; expected one of {', '.join(SCOPES)}"
            )
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(
                f"gate rule on {self.metric}: confidence = {self.confidence!r}; expected a number in [0.5, 1)"
            )
        if self.tolerance < 0:
            raise ConfigError(f"gate rule on {self.metric}: tolerance = {self.tolerance!r}; expected >= 0")
        if not self.name:
            self.name = describe_rule(self)

    @property
    def task(self) -> str:
        return METRICS[self.metric][0]

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][1]


@dataclass
class Gate:
    rules: list[Rule] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rules": [asdict(r) for r in self.rules]}


def describe_rule(rule: Rule) -> str:
    change = "drop" if rule.higher_is_better else "increase"
    where = f"no slice with n >= {rule.min_count}: {rule.metric}" if rule.scope == "slices" else rule.metric
    return f"{where} {change} <= {rule.tolerance:g} at {rule.confidence:.0%} confidence"


def judge_worsening(point, center, se, df, tolerance: float, confidence: float, n) -> dict:
    """The verdict on a worsening (positive = candidate worse) estimated by `point`.

    The one-sided bounds are center -/+ t_df(confidence) se (`center` = `point` except for the
    Agresti-Min adjustment). Every argument may be an array: `benchmarks/gate_calibration.py`
    judges thousands of simulated comparisons with this same function. Returns arrays (or
    scalars) worsening, lower_bound, upper_bound, status and n_needed (see `examples_needed`).
    """
    q = stats.t.ppf(confidence, df)  # df = inf: the normal quantile
    lower, upper = center - q * se, center + q * se
    status = np.where(upper <= tolerance, "pass", np.where(lower > tolerance, "fail", "inconclusive"))
    return {
        "worsening": point,
        "lower_bound": lower,
        "upper_bound": upper,
        "status": status,
        "n_needed": examples_needed(point, se, tolerance, confidence, n),
    }


def examples_needed(point, se, tolerance: float, confidence: float, n):
    """Examples at which the verdict would settle if the point estimate and per-example variance held.

    The standard error shrinks as sqrt(n / n'), so the bound on the far side of the point crosses
    the tolerance when z se sqrt(n / n') = |tolerance - point|, i.e.
    n' = n (z se / |tolerance - point|)^2 (z: the normal quantile at `confidence`). A point
    exactly on the tolerance never settles: inf. Meaningful for inconclusive verdicts only.
    """
    z = stats.norm.ppf(confidence)
    gap = np.abs(tolerance - np.asarray(point, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(
            gap > 0, np.ceil(n * (z * np.asarray(se, np.float64) / np.where(gap > 0, gap, 1.0)) ** 2), np.inf
        )
    return np.maximum(need, np.asarray(n) + 1)


def judge_change(rule: Rule, change, confidence: float, n) -> dict:
    """`judge_worsening` of a rule on an `intervals.Interval` of candidate - baseline (arrays in, arrays out)."""
    sign = -1.0 if rule.higher_is_better else 1.0
    return judge_worsening(
        sign * np.asarray(change.point),
        sign * np.asarray(change.center),
        change.se,
        change.df,
        rule.tolerance,
        confidence,
        n,
    )


def judge_rule(rule: Rule, change, confidence: float, n: int, where: str = "") -> dict:
    """One rule's verdict, as a JSON-ready dict with a one-line `detail`, from an Interval of candidate - baseline."""
    v = judge_change(rule, change, confidence, n)
    out = {
        "rule": rule.name,
        "metric": rule.metric,
        "status": str(v["status"]),
        "worsening": float(v["worsening"]),
        "lower_bound": float(v["lower_bound"]),
        "upper_bound": float(v["upper_bound"]),
        "tolerance": rule.tolerance,
        "confidence": confidence,
        "se": float(change.se),
        "method": change.method,
        "n": int(n),
    }
    out["n_needed"] = float(v["n_needed"]) if out["status"] == "inconclusive" else None
    out["detail"] = where + describe_verdict(rule, out)
    return out


def describe_verdict(rule: Rule, v: dict) -> str:
    """One line: the change, both one-sided bounds, and why the verdict is what it is."""
    w = v["worsening"]
    if w == 0:
        change = f"{rule.metric} unchanged"
    else:
        change = (
            f"{rule.metric} {'dropped' if rule.higher_is_better else 'rose'} by {w:.4f}"
            if w > 0
            else f"{rule.metric} improved by {-w:.4f}"
        )
    bounds = (
        f"one-sided {v['confidence']:.1%} bounds of the worsening [{v['lower_bound']:+.4f}, {v['upper_bound']:+.4f}]"
    )
    if v["status"] == "pass":
        return f"{change} ({bounds}: upper <= tolerance {rule.tolerance:g})"
    if v["status"] == "fail":
        return f"{change} ({bounds}: lower > tolerance {rule.tolerance:g})"
    return f"{change} ({bounds} straddle tolerance {rule.tolerance:g}); {describe_needed(v['n_needed'], v['n'])}"


def describe_needed(n_needed: float | None, n: int) -> str:
    if n_needed is None or not np.isfinite(n_needed):
        return "the change sits on the tolerance (or its variance is unknown): no number of examples settles it"
    return f"about {int(n_needed):,} examples (have {n:,}) would settle it at the variance observed"


def combine_statuses(statuses) -> str:
    """fail if any fails; else inconclusive if any is; else pass; 'not applicable' when none applies."""
    s = [x for x in statuses if x != "not applicable"]
    if not s:
        return "not applicable"
    return "fail" if "fail" in s else ("inconclusive" if "inconclusive" in s else "pass")


def default_gate() -> Gate:
    """The gate `trainwise compare` uses without --gate (rules for the other task are skipped)."""
    return Gate(
        [
            Rule("accuracy", 0.005),  # accuracy drop <= 0.5 points
            Rule("ece", 0.01),  # calibration does not get worse by > 1 point of ECE
            Rule("accuracy", 0.02, scope="slices", min_count=100),
            Rule("loss", 0.01),  # lm: <= 0.01 nats per byte
            Rule("next_byte_accuracy", 0.005),
            Rule("loss", 0.05, scope="slices", min_count=100),
        ]
    )


def gate_from_dict(data: dict, source: str = "gate") -> Gate:
    rules = data.get("rule")
    extra = [k for k in data if k != "rule"]
    if extra or not isinstance(rules, list) or not rules:
        raise ConfigError(f"{source}: expected one or more [[rule]] tables (got keys: {', '.join(data) or 'none'})")
    out = []
    for i, r in enumerate(rules, 1):
        unknown = [k for k in r if k not in RULE_KEYS]
        if unknown:
            raise ConfigError(
                f"{source}: rule {i} has unknown key(s) {', '.join(unknown)} (valid: {', '.join(RULE_KEYS)})"
            )
        if "metric" not in r or "tolerance" not in r:
            raise ConfigError(f"{source}: rule {i} needs 'metric' and 'tolerance'")
        try:
            out.append(Rule(**r))
        except TypeError as e:
            raise ConfigError(f"{source}: rule {i}: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{source}: rule {i}: {e}") from None
    return Gate(out)


def load_gate(path: str | Path) -> Gate:
    """Read a gate from a TOML file of [[rule]] tables."""
    return gate_from_dict(read_toml(path, "gate file", "a TOML file of [[rule]] tables"), str(path))
