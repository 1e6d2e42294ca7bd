"""A model's audit trail as `trainwise history` shows it: entries, problems, and what was settled."""

from __future__ import annotations

from dataclasses import dataclass

from trainwise.registry import audit
from trainwise.registry.promote import reconcile_moves
from trainwise.registry.store import get_client, move_lock
from trainwise.registry.versions import get_model


@dataclass
class History:
    entries: list[dict]  # audit entries, oldest first (trainwise.registry.audit.read_entries)
    problems: list[str]  # a broken hash chain, aliases that disagree with the trail
    reconciled: list[dict]  # entries a killed promoter left unfinished, settled by this read


def read_history(name: str, tracking_uri: str | None = None) -> History:
    """Settle what a killed promoter left unfinished (under the move lock), then read the trail
    and check it against itself and the model's aliases."""

    client = get_client(tracking_uri)
    get_model(client, name)
    with move_lock(client.tracking_uri):
        reconciled = reconcile_moves(client, name)
    entries = audit.read_entries(client, name)
    problems = audit.check_chain(entries) + audit.check_aliases(entries, get_model(client, name).aliases)
    return History(entries, problems, reconciled)
