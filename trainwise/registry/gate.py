"""The one place the registry meets the evaluate component's comparison and gate.

`promote` compares the candidate with the alias's current holder on their registered evaluation
data (the eval/ folders logged at `register`). Imported lazily, so the registry works, and its
tests run, without the evaluate component.
"""

from __future__ import annotations

from pathlib import Path

from trainwise.errors import TrainwiseError

VERDICTS = ("pass", "fail", "inconclusive")
EXIT_CODES = {
    "pass": 0,
    "fail": 1,
    "inconclusive": 3,
}  # as trainwise.evaluate.gate.EXIT_CODES (tested equal); 2 = bad input


class GateUnavailable(TrainwiseError):
    """The comparison cannot run here (the evaluate component is missing)."""


def run_gate(
    baseline_eval_dir: Path, candidate_eval_dir: Path, gate_path: str | None = None
) -> tuple[str, list[str], dict]:
    """(verdict, reasons, evidence) of the gate comparing candidate with baseline.

    verdict: pass, fail or inconclusive. reasons: the failing rules (fail), or the inconclusive
    rules and what would settle them (inconclusive). Both folders hold predictions.parquet and
    metrics.json as `trainwise evaluate` writes them. `gate_path` names a gate file (None or '' =
    the evaluate component's default gate).
    """
    # lazy: evaluate.compare imports pandas, scipy, sklearn, statsmodels; every CLI verb loads this module
    from trainwise.evaluate.compare import compare_dirs
    from trainwise.evaluate.gate import default_gate, load_gate

    gate = load_gate(gate_path) if gate_path else default_gate()
    comparison = compare_dirs(Path(baseline_eval_dir), Path(candidate_eval_dir), gate=gate)
    return comparison.verdict, verdict_reasons(comparison), comparison.to_dict()


def verdict_reasons(comparison) -> list[str]:
    """The lines that explain a comparison's verdict: failing rules, or inconclusive ones and the advice."""
    if comparison.verdict == "fail":
        return [str(f) for f in comparison.failures]
    if comparison.verdict == "inconclusive":
        return [str(f) for f in comparison.inconclusive] + [f"to settle it: {comparison.settle}"]
    return []


def as_verdict(outcome) -> str:
    """A judge's outcome as pass/fail/inconclusive; a bool (the older judge_fn contract) is pass/fail."""
    if isinstance(outcome, bool):
        return "pass" if outcome else "fail"
    if outcome not in VERDICTS:
        raise ValueError(f"gate verdict {outcome!r}: expected one of {', '.join(VERDICTS)}")
    return outcome
