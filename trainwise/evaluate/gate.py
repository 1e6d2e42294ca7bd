"""Quality gates: rules on paired metric changes, read from TOML.

A rule fails only when the data show, at the stated confidence, that the candidate is worse than
the baseline by more than the tolerance: the one-sided lower confidence bound of the worsening
(from the paired bootstrap) exceeds `tolerance`. So two equally good models pass (false alarms
at most 1 - confidence per rule), and a real decay larger than the tolerance fails once the test
set is big enough to show it. `benchmarks/gate_calibration.py` measures both rates.

Tolerances are in the metric's own units: accuracy 0.005 is half a point, loss is nats per byte.
Slice rules apply to every slice with at least `min_count` examples, with the confidence
Bonferroni-corrected over the slices checked, so that many small slices do not multiply the false
alarms.

```toml
[[rule]]
metric = "accuracy"      # accuracy drop <= 0.5 points at 95% confidence
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
            raise ConfigError(f"gate rule on {self.metric}: scope = {self.scope!r}; expected one of {', '.join(SCOPES)}")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"gate rule on {self.metric}: confidence = {self.confidence!r}; expected a number in [0.5, 1)")
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


def default_gate() -> Gate:
    """The gate `trainwise compare` uses without --gate (rules for the other task are skipped)."""
    return Gate([
        Rule("accuracy", 0.005),                           # accuracy drop <= 0.5 points
        Rule("ece", 0.01),                                 # calibration does not get worse by > 1 point of ECE
        Rule("accuracy", 0.02, scope="slices", min_count=100),
        Rule("loss", 0.01),                                # lm: <= 0.01 nats per byte
        Rule("next_byte_accuracy", 0.005),
        Rule("loss", 0.05, scope="slices", min_count=100),
    ])


def gate_from_dict(data: dict, source: str = "gate") -> Gate:
    rules = data.get("rule")
    extra = [k for k in data if k != "rule"]
    if extra or not isinstance(rules, list) or not rules:
        raise ConfigError(f"{source}: expected one or more [[rule]] tables (got keys: {', '.join(data) or 'none'})")
    out = []
    for i, r in enumerate(rules, 1):
        unknown = [k for k in r if k not in RULE_KEYS]
        if unknown:
            raise ConfigError(f"{source}: rule {i} has unknown key(s) {', '.join(unknown)} (valid: {', '.join(RULE_KEYS)})")
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
    from trainwise.config import read_toml

    return gate_from_dict(read_toml(path, "gate file", "a TOML file of [[rule]] tables"), str(path))
