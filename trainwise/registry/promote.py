"""Alias moves: promotion through the gate, forced promotion, rollback; each one audited.

Every move runs under `move_lock`: read the alias's holder, judge, append the audit entry, set the
alias, mark the entry FINISHED. So two promoters never interleave, and the alias always equals the
last recorded move (benchmarks/registry_concurrency.py). A promoter killed between writing the
entry and finishing it leaves the entry RUNNING; the next promote, rollback or history reconciles
it with the real alias first (`audit.reconcile`).
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field

from trainwise.registry import audit, gate
from trainwise.registry.lineage import TAG
from trainwise.registry.store import RegistryError, get_client, move_lock, sqlite_path
from trainwise.registry.versions import download_version, get_alias_version, get_model, get_version, list_versions
from trainwise.rundir import file_sha256


@dataclass
class MoveResult:
    """What a promote/rollback did: action is promote, force, rollback, refused, noop, or (with
    check_only) check-passed / check-failed / check-inconclusive. verdict is the label recorded in
    the audit trail; outcome the gate's pass / fail / inconclusive (or not-run, none)."""

    action: str
    alias: str
    from_version: str | None
    to_version: str
    verdict: str = ""
    failures: list[str] = field(default_factory=list)
    seq: int | None = None
    outcome: str = ""


LABELS = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}  # gate verdict -> audit trail label
# Tests only: "before-alias" or "after-alias" kills the promoter (SIGKILL) at that point of a move.
FAULT_ENV = "TRAINWISE_REGISTRY_FAULT"


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def reconcile_moves(client, name: str) -> list[dict]:
    """Finish the audit entries a killed promoter left unfinished (the caller holds the move lock)."""
    return audit.reconcile(
        client, name, get_model(client, name).aliases, local_store=sqlite_path(client.tracking_uri) is not None
    )


def check_alias(alias: str) -> None:
    # MLflow reserves 'latest' and 'v<digits>' (they name versions); see mlflow/utils/validation.py
    if (
        not re.fullmatch(r"[A-Za-z0-9_\-]+", alias or "")
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
    ):
        raise RegistryError(
            f"alias {alias!r} is not valid: use letters, digits, '_' or '-' (not 'latest' or 'v<number>'), e.g. "
            "champion"
        )


def judge(client, name: str, baseline_version: str | None, candidate, gate_path: str | None, force: bool):
    """(outcome, label, reasons, evidence) of candidate against the alias's current holder.

    outcome: pass, fail, inconclusive, or not-run (the gate could not run and `force` is set).
    """
    evidence = {
        "model": name,
        "baseline_version": baseline_version,
        "candidate_version": str(candidate.version),
        "candidate_eval_sha256": candidate.tags.get(TAG + "eval_sha256", ""),
    }
    if baseline_version is None:
        return "pass", "no-baseline", [], evidence  # the first holder of an alias has nothing to beat
    baseline = client.get_model_version(name, baseline_version)
    evidence["baseline_eval_sha256"] = baseline.tags.get(TAG + "eval_sha256", "")
    missing = [f"v{mv.version}" for mv in (baseline, candidate) if not mv.tags.get(TAG + "eval_artifact")]
    if missing:
        why = (
            f"{', '.join(missing)} of {name!r} has no registered evaluation data (register a run directory that has "
            "eval/ from `trainwise evaluate`)"
        )
        if not force:
            raise RegistryError(f"cannot gate the promotion: {why}; or override with --force --reason TEXT")
        return "not-run", "not-run", [why], evidence
    if gate_path:
        evidence["gate_sha256"] = file_sha256(gate_path)
    baseline_dir, candidate_dir = (
        download_version(client, baseline, "eval"),
        download_version(client, candidate, "eval"),
    )
    try:
        outcome, reasons, comparison = gate.run_gate(baseline_dir, candidate_dir, gate_path)
    except gate.GateUnavailable as e:
        if not force:
            raise
        return "not-run", "not-run", [str(e)], evidence
    evidence["comparison"] = comparison
    outcome = gate.as_verdict(outcome)
    return outcome, LABELS[outcome], reasons, evidence


def _record_move(client, name: str, fields: dict, evidence: dict | None, alias: str, version: str) -> int:
    """Append the audit entry, then set the alias, then mark the entry FINISHED (caller holds the lock)."""
    entry = audit.append_entry(client, name, fields, evidence)
    _fault("before-alias")
    try:
        client.set_registered_model_alias(name, alias, version)
    except BaseException:
        client.set_terminated(entry["run_id"], "FAILED")
        raise
    _fault("after-alias")
    client.set_terminated(entry["run_id"], "FINISHED")
    return entry["seq"]


def promote(
    name: str,
    version,
    alias: str = "champion",
    reason: str = "",
    force: bool = False,
    tracking_uri: str | None = None,
    gate_path: str | None = None,
    check_only: bool = False,
    judge_fn=None,
    accept_inconclusive: bool = False,
) -> MoveResult:
    """Move `alias` of `name` to `version` if the gate passes (or `force` with a reason).

    The gate must *pass*: an inconclusive verdict (not shown worse, but not shown within
    tolerance either) refuses the move like a failure, unless `accept_inconclusive` (which, like
    `force`, needs a reason and is recorded as "inconclusive (accepted)").
    `check_only` runs the gate against the current holder and returns its verdict as action
    "check-passed" / "check-failed" / "check-inconclusive", writing nothing.
    `judge_fn(current_version) -> (verdict, reasons, evidence)` (verdict pass/fail/inconclusive,
    or a bool) replaces the comparison on the registered evaluation data, for callers that
    compared both models on other data (the monitor's retraining compares them on the new
    window's held-out rows); it runs under the move lock and its verdict and evidence are
    recorded like the built-in gate's.
    """
    # Over 60 lines on purpose: one lock held from the gate to the audit entry; the steps under it (check, gate, move,
    # audit) read in order.
    check_alias(alias)
    if force and not reason.strip():
        raise RegistryError("--force needs --reason TEXT: an override is recorded with its justification")
    if accept_inconclusive and not reason.strip():
        raise RegistryError(
            "--accept-inconclusive needs --reason TEXT: accepting an unproven candidate is recorded with its "
            "justification"
        )
    client = get_client(tracking_uri)
    candidate = get_version(client, name, version)
    version = str(candidate.version)  # MLflow returns int or str depending on the store
    with move_lock(client.tracking_uri):
        if not check_only:  # --check writes nothing
            reconcile_moves(client, name)
        current = get_model(client, name).aliases.get(alias)
        current = str(current) if current is not None else None
        if current == version:
            return MoveResult("noop", alias, current, version, "already-holds")
        if judge_fn is not None:
            outcome, failures, evidence = judge_fn(current)
            outcome = gate.as_verdict(outcome)
            verdict = LABELS[outcome]
        else:
            outcome, verdict, failures, evidence = judge(client, name, current, candidate, gate_path, force)
        if check_only:
            action = {"pass": "check-passed", "inconclusive": "check-inconclusive"}.get(outcome, "check-failed")
            return MoveResult(action, alias, current, version, verdict, failures, outcome=outcome)
        fields = {
            "alias": alias,
            "from_version": current or "",
            "to_version": version,
            "reason": reason,
            "verdict": verdict,
            "failures": "; ".join(failures)[:4000],
        }
        allowed = outcome == "pass" or (outcome == "inconclusive" and accept_inconclusive)
        if not allowed and not force:
            entry = audit.append_entry(client, name, {**fields, "action": "refused"}, evidence)
            client.set_terminated(entry["run_id"], "FINISHED")
            return MoveResult("refused", alias, current, version, verdict, failures, entry["seq"], outcome)
        action = "promote" if allowed else "force"
        if action == "force":
            fields["verdict"] = f"overridden ({verdict})"
        elif outcome == "inconclusive":
            fields["verdict"] = "inconclusive (accepted)"
        seq = _record_move(client, name, {**fields, "action": action}, evidence, alias, version)
        return MoveResult(action, alias, current, version, fields["verdict"], failures, seq, outcome)


def rollback(
    name: str, alias: str = "champion", to=None, reason: str = "", tracking_uri: str | None = None
) -> MoveResult:
    """Move `alias` back to its previous recorded holder (or to version `to`), without a gate."""
    check_alias(alias)
    client = get_client(tracking_uri)
    get_alias_version(client, name, alias)  # unknown name or alias: error listing what exists
    target = str(get_version(client, name, to).version) if to is not None else None
    with move_lock(client.tracking_uri):
        reconcile_moves(client, name)
        current = str(get_model(client, name).aliases[alias])
        if target is None:
            stack = audit.holder_stack(audit.read_entries(client, name), alias)
            below = stack[:-1] if stack and stack[-1] == current else stack
            if not below:
                raise RegistryError(
                    f"alias {alias!r} of {name!r} has no previous holder recorded; name one with --to VERSION "
                    f"(versions: {', '.join(list_versions(client, name))})"
                )
            target = below[-1]
        if target == current:
            return MoveResult("noop", alias, current, target, "already-holds")
        fields = {
            "alias": alias,
            "from_version": current,
            "to_version": target,
            "reason": reason or "rollback",
            "verdict": "not-gated",
            "action": "rollback",
        }
        seq = _record_move(
            client, name, fields, {"model": name, "rollback_from": current, "rollback_to": target}, alias, target
        )
        return MoveResult("rollback", alias, current, target, "not-gated", [], seq)
