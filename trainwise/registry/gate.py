"""The one place the registry meets the evaluate component's comparison and gate.

`promote` compares the candidate with the alias's current holder on their registered evaluation
data (the eval/ folders logged at `register`). Imported lazily, so the registry works, and its
tests run, without the evaluate component.
"""

from __future__ import annotations

from pathlib import Path

from trainwise.errors import TrainwiseError


class GateUnavailable(TrainwiseError):
    """The comparison cannot run here (the evaluate component is missing)."""


def run_gate(baseline_eval_dir: Path, candidate_eval_dir: Path, gate_path: str | None = None) -> tuple[bool, list[str], dict]:
    """(passed, failing rules, evidence) of the gate comparing candidate with baseline.

    Both folders hold predictions.parquet and metrics.json as `trainwise evaluate` writes them.
    `gate_path` names a gate file (None or '' = the evaluate component's default gate).
    """
    from trainwise.evaluate.compare import compare_dirs
    from trainwise.evaluate.gate import default_gate, load_gate

    gate = load_gate(gate_path) if gate_path else default_gate()
    comparison = compare_dirs(Path(baseline_eval_dir), Path(candidate_eval_dir), gate=gate)
    return bool(comparison.passed), [str(f) for f in comparison.failures], comparison.to_dict()
