"""The append-only audit trail of alias moves, kept in the tracking store itself.

MLflow keeps no history of aliases (mlflow/mlflow#2169, open since 2019): setting an alias simply
overwrites it. So every move (and every refused promotion) is written as one MLflow run in the
experiment `trainwise-audit/<NAME>`, created with all its fields as tags in a single insert, so an
entry is never half-written, it survives restarts, and it shows in the MLflow UI next to the model.

Entries are numbered (`seq`) and hash-chained (each holds the sha256 of its predecessor), so a
deleted, edited or interleaved entry is detected by `check_chain`. The writer holds
`store.move_lock` around (read alias -> append entry -> set alias -> mark entry FINISHED).

The entry is the intent, written before the alias moves. A writer killed before it marks the entry
FINISHED leaves it RUNNING; `reconcile` (run under the lock by the next promote, rollback or
history) compares it with the real alias and records it as completed (FINISHED) or rolled back
(FAILED), so the trail and the alias agree again. The entry's hashed fields are never changed:
only its status and the tags `reconciled` / `reconciled_note`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import time

from trainwise.registry.lineage import canonical_sha256
from trainwise.registry.store import RegistryError, get_or_create_experiment

PREFIX = "trainwise.audit."
FIELDS = (
    "seq",
    "when",
    "when_us",
    "who",
    "model",
    "alias",
    "action",
    "from_version",
    "to_version",
    "reason",
    "verdict",
    "failures",
    "evidence_sha256",
    "prev_sha256",
)
MOVES = ("promote", "force", "rollback")  # actions that move the alias; "refused" does not
EXTRA = ("entry_sha256", "writer_host", "reconciled", "reconciled_note")  # tags outside the hashed fields
# An unfinished entry of a writer on another machine sharing a server store may still be in flight
# (the lock orders one machine's processes only): it is reconciled only once this old.
STALE_US = 10 * 60 * 1_000_000


def audit_experiment(name: str) -> str:
    return f"trainwise-audit/{name}"


def actor() -> str:
    """Who made the move: $TRAINWISE_ACTOR (CI sets it to the pipeline's user), else user@host."""
    return os.environ.get("TRAINWISE_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def now_us() -> int:
    return time.time_ns() // 1000


def iso(us: int) -> str:
    return (
        dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def parse_time(text: str) -> int:
    """ISO 8601 (UTC when no zone is given) or Unix seconds -> microseconds since the epoch.

    >>> parse_time("1970-01-01T00:00:01Z"), parse_time("2.5")
    (1000000, 2500000)
    """
    try:
        return int(round(float(text) * 1e6))
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RegistryError(
            f"--at {text!r}: expected an ISO 8601 time such as 2026-11-22T05:30:00Z, or Unix seconds"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(round(t.timestamp() * 1e6))


def read_entries(client, name: str) -> list[dict]:
    """Every audit entry of model `name` in `seq` order, each with its MLflow `status` and `run_id`."""
    # lazy: mlflow takes seconds to import; every CLI verb loads this module
    from mlflow.entities import ViewType

    exp = client.get_experiment_by_name(audit_experiment(name))
    if exp is None:
        return []
    entries, token = [], None
    while True:  # ViewType.ALL: an entry deleted in the UI is only soft-deleted and still counts
        page = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        for run in page:
            e = {k: run.data.tags.get(PREFIX + k, "") for k in FIELDS + EXTRA}
            e.update(
                seq=int(e["seq"] or 0), when_us=int(e["when_us"] or 0), status=run.info.status, run_id=run.info.run_id
            )
            entries.append(e)
        token = page.token
        if not token:
            break
    return sorted(entries, key=lambda e: e["seq"])


def entry_hash(e: dict) -> str:
    return canonical_sha256({k: str(e[k]) for k in FIELDS})


def append_entry(client, name: str, fields: dict, evidence: dict | None) -> dict:
    """Write the next entry (caller holds the move lock); returns it with its `run_id`.

    The entry starts RUNNING; the caller marks it FINISHED once the alias is set, or FAILED.
    """
    exp_id = get_or_create_experiment(client, audit_experiment(name))
    previous = read_entries(client, name)
    e = {k: "" for k in FIELDS}
    e.update(fields)
    when_us = now_us()
    e.update(
        seq=(previous[-1]["seq"] if previous else 0) + 1,
        when_us=when_us,
        when=iso(when_us),
        who=actor(),
        model=name,
        evidence_sha256=canonical_sha256(evidence) if evidence is not None else "",
        prev_sha256=previous[-1]["entry_sha256"] if previous else "",
    )
    e["entry_sha256"] = entry_hash(e)
    e["writer_host"] = socket.gethostname()
    tags = {PREFIX + k: str(v) for k, v in e.items()}
    run = client.create_run(exp_id, start_time=when_us // 1000, tags=tags, run_name=f"{e['action']}-{e['seq']:06d}")
    if evidence is not None:
        client.log_dict(run.info.run_id, evidence, "evidence.json")
    return {**e, "run_id": run.info.run_id, "status": "RUNNING"}


def reconcile(client, name: str, aliases: dict, local_store: bool) -> list[dict]:
    """Finish the entries that a killed writer left RUNNING, against the real alias; returns them.

    A move happened if the alias's next recorded move starts from its target, or, when it is the
    alias's last move, if the alias holds its target now: then it is recorded as completed
    (FINISHED), else as rolled back (FAILED: the alias never moved). An entry that moves no alias
    (a refusal, a retraining event) is complete once written. The caller holds `store.move_lock`,
    so no writer that the lock orders is in flight (see `_settled`).
    """
    entries = read_entries(client, name)
    done = []
    for i, e in enumerate(entries):
        if e["status"] != "RUNNING" or not _settled(e, local_store):
            continue
        if e["action"] in MOVES:
            later = next(
                (
                    f
                    for f in entries[i + 1 :]
                    if f["action"] in MOVES and f["alias"] == e["alias"] and f["status"] != "FAILED"
                ),
                None,
            )
            holder = later["from_version"] if later else str(aliases.get(e["alias"], "")) or "-"
            happened = holder == e["to_version"]
            note = f"{e['alias']} held v{holder} after it" if later else f"{e['alias']} held v{holder}"
        else:
            happened, note = True, f"a {e['action'] or 'blank'} entry moves no alias"
        outcome = "completed" if happened else "rolled back"
        client.set_tag(e["run_id"], PREFIX + "reconciled", outcome)
        client.set_tag(
            e["run_id"],
            PREFIX + "reconciled_note",
            f"{iso(now_us())} by {actor()}: its writer stopped before finishing it; {note}",
        )
        client.set_terminated(
            e["run_id"], "FINISHED" if happened else "FAILED"
        )  # last: a kill before it leaves it to redo
        done.append({**e, "status": "FINISHED" if happened else "FAILED", "reconciled": outcome})
    return done


def _settled(e: dict, local_store: bool) -> bool:
    """Whether an unfinished entry's writer can no longer be moving: under the lock, any writer of a
    local store or of this machine is done; one on another machine sharing a server may still be
    in flight (the lock orders one machine's processes only) until the entry is STALE_US old."""
    return local_store or e["writer_host"] == socket.gethostname() or now_us() - e["when_us"] > STALE_US


def check_chain(entries: list[dict]) -> list[str]:
    """Problems in the trail: gaps, edited or re-ordered entries, moves from a holder that was not current."""
    problems, prev_hash, holder = [], "", {}
    for i, e in enumerate(entries, 1):
        if e["seq"] != i:
            problems.append(f"entry {i}: seq is {e['seq']} (an entry is missing or duplicated)")
        if e["prev_sha256"] != prev_hash:
            problems.append(f"entry {e['seq']}: does not chain to the entry before it (deleted or reordered)")
        if e["entry_sha256"] != entry_hash(e):
            problems.append(f"entry {e['seq']}: its fields were edited after it was written")
        prev_hash = e["entry_sha256"]
        if e["action"] in MOVES and e["status"] == "FINISHED":
            if e["from_version"] != holder.get(e["alias"], ""):
                problems.append(
                    f"entry {e['seq']}: moved {e['alias']} from v{e['from_version'] or '-'} but "
                    f"v{holder.get(e['alias']) or '-'} held it (interleaved writers)"
                )
            holder[e["alias"]] = e["to_version"]
    return problems


def check_aliases(entries: list[dict], aliases: dict) -> list[str]:
    """Aliases whose MLflow holder differs from the last recorded move (moved outside trainwise)."""
    last = {e["alias"]: e["to_version"] for e in moves(entries)}
    out = []
    for alias in sorted(set(last) | set(aliases)):
        now = str(aliases[alias]) if alias in aliases else None
        if now != last.get(alias):
            out.append(
                f"alias {alias} is v{now or '-'} in MLflow but the last recorded move set v{last.get(alias) or '-'} "
                "(moved outside trainwise?)"
            )
    return out


def moves(entries: list[dict], alias: str | None = None) -> list[dict]:
    """Entries that moved an alias (completed, not refused)."""
    return [e for e in entries if e["action"] in MOVES and e["status"] == "FINISHED" and alias in (None, e["alias"])]


def holders_at(entries: list[dict], at_us: int) -> dict[str, str | None]:
    """Which version held each alias at time `at_us` (None: the alias did not exist yet)."""
    held: dict[str, str | None] = {e["alias"]: None for e in moves(entries)}
    for e in moves(entries):
        if e["when_us"] <= at_us:
            held[e["alias"]] = e["to_version"]
    return held


def holder_stack(entries: list[dict], alias: str) -> list[str]:
    """The alias's holders as a stack: a promotion pushes, a rollback to the one below pops.

    So rolling back twice after v1 -> v2 -> v3 goes to v2 and then to v1, not back to v3.
    """
    stack: list[str] = []
    for e in moves(entries, alias):
        if e["action"] == "rollback" and len(stack) >= 2 and stack[-2] == e["to_version"]:
            stack.pop()
        else:
            stack.append(e["to_version"])
    return stack
