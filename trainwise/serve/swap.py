"""Hot swap: follow a NAME@ALIAS reference and switch to the new version when the alias moves.

Every `poll_alias_s` the poller asks the registry which version holds the alias; when it differs
from the served one it loads the new version in a worker thread (the event loop keeps serving),
warms it with one prediction, then replaces `state.runtime` in one assignment. The batcher reads
that reference once per batch, so each batch runs wholly on the old or wholly on the new model and
no request fails during the switch. A version that fails to load is logged and retried at the
next poll; the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import logging

from trainwise.registry.store import get_client
from trainwise.registry.versions import get_alias_version
from trainwise.serve.runtime import load_runtime

log = logging.getLogger("trainwise.serve")


def alias_version(ref: str, tracking_uri: str | None) -> str:
    name, alias = ref.split("@", 1)
    return f"{name}/{get_alias_version(get_client(tracking_uri), name, alias).version}"


def load_and_warm(ref: str, precision: str, tracking_uri: str | None, example: list[dict] | None):
    runtime = load_runtime(ref, precision, tracking_uri)
    if example:
        runtime.predict(example)  # first call pays one-off costs (allocations, kernels) off the request path
    return runtime


async def poll_alias(state) -> None:
    while True:
        await asyncio.sleep(state.settings.poll_alias_s)
        try:
            await swap_if_moved(state)
        except Exception as e:  # noqa: BLE001 - keep serving the old version; try again next poll
            log.warning("hot swap check failed: %s", e)


async def swap_if_moved(state) -> bool:
    """Load and switch to the alias's current version if it moved; True when a swap happened."""
    current = await asyncio.to_thread(alias_version, state.ref, state.tracking_uri)
    if current == state.runtime.version:
        return False
    new = await asyncio.to_thread(
        load_and_warm, state.ref, state.settings.precision, state.tracking_uri, getattr(state, "example_", None)
    )
    old = state.runtime.version
    state.runtime = new  # the atomic switch
    state.metrics.set_model(new.version, new.precision)
    state.metrics.swaps.inc()
    log.warning("hot swap: %s -> %s", old, new.version)
    return True
