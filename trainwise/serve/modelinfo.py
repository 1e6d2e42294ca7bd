"""What GET /v1/model answers: the served model's metadata, its lineage and its model card.

For a registered version, lineage is the registry's `trainwise.*` tags and the card is the
registry's Markdown card; for a bare run directory, lineage is the run's summary.json.
"""

from __future__ import annotations

from trainwise.registry.card import build_card
from trainwise.registry.lineage import TAG
from trainwise.registry.store import get_client
from trainwise.rundir import read_json


def describe_model(runtime, tracking_uri: str | None = None) -> dict:
    meta = runtime.meta
    info = {k: v for k, v in meta.get("info", {}).items() if k != "preprocessing"}  # fitted scalers are not metadata
    spec = {k: v for k, v in (runtime.input or {}).items() if k != "preprocessing"}
    out = {
        "model_version": runtime.version,
        "precision": runtime.precision,
        "workload": meta.get("workload"),
        "task": meta.get("task"),
        "spec": meta.get("spec"),
        "input": spec or None,
        "info": info,
        "weights_sha256": meta.get("weights_sha256"),
        "lineage": {},
        "card": None,
    }
    reg = meta.get("registry")
    if reg:
        client = get_client(reg.get("tracking_uri") or tracking_uri)
        mv = client.get_model_version(reg["name"], reg["version"])
        out["lineage"] = {k[len(TAG) :]: v for k, v in mv.tags.items() if k.startswith(TAG)}
        out["registry"] = reg
        out["card"] = build_card(reg["name"], reg["version"], reg.get("tracking_uri") or tracking_uri)
    elif runtime.model_dir is not None:
        summary = runtime.model_dir.parent / "summary.json"
        out["lineage"] = {"run_dir": str(runtime.model_dir.parent)}
        if summary.is_file():
            out["lineage"]["summary"] = read_json(summary)
    return out
