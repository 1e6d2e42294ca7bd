"""Where the monitor's reference comes from: a run directory's stored profile, a Parquet file or
folder profiled out of core, any other table profiled in memory, or a registered version's
training reference (downloaded from the registry).

It sits above monitor.reference (which training imports to write the reference) so that training
never imports the registry or the monitor's entry points.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trainwise.errors import DataError
from trainwise.monitor import logschema as ls
from trainwise.monitor.data import load_table
from trainwise.monitor.reference import REFERENCE_PROFILE, frame_profile, read_reference
from trainwise.monitor.stream import profile_parquet
from trainwise.registry.store import get_client
from trainwise.registry.versions import download_reference, get_version


def reference_profile(path: str, tested, label_column: str) -> dict:
    """The profile of a reference: a run directory's stored model/reference_profile.json, a Parquet file
    or folder profiled out of core, or any other table (CSV, a run's eval predictions) profiled in memory."""
    p = Path(path)
    stored = p / "model" / REFERENCE_PROFILE
    if p.is_dir() and stored.is_file():
        return json.loads(stored.read_text())
    if (
        p.is_dir()
        and not (p / "model").is_dir()
        and not (p / "eval").is_dir()
        or p.suffix.lower() in (".parquet", ".pq")
    ):
        if p.exists():
            return _renamed(profile_parquet(p, tested, label_column))
    return frame_profile(load_table(path), tested, label_column)


def _renamed(profile: dict) -> dict:
    """Evaluation's `pred` column as `prediction`, the monitor's one layout (logschema.to_monitor_layout)."""
    cols = profile["columns"]
    if ls.EVAL_PREDICTION in cols and ls.PREDICTION not in cols:
        cols[ls.PREDICTION] = cols.pop(ls.EVAL_PREDICTION)
        rows = profile["sample"]["rows"]
        rows[ls.PREDICTION] = rows.pop(ls.EVAL_PREDICTION, [])
    return profile


def version_reference(model_version: str, tracking_uri: str | None = None) -> tuple[pd.DataFrame, str]:
    """(reference rows, description) of a logged `model_version` ("NAME/VERSION" of a registered model)."""

    name, _, version = model_version.rpartition("/")
    if not name or not version.isdigit():
        raise DataError(
            f"the log's model_version {model_version!r} is not a registered NAME/VERSION (the server served a run "
            "directory): give --reference RUN_DIR, whose model/reference.parquet is that run's training reference"
        )
    client = get_client(tracking_uri)
    mv = get_version(client, name, version)
    path = download_reference(client, mv)
    return read_reference(
        path, model_version
    ), f"training reference of {model_version} (held-out training rows stored at registration)"


def common_columns(reference, currents: list, keep: list[str]):
    """The reference restricted to columns every current table has (plus `keep`), and the dropped names.

    Current tables keep their extra columns: the monitor ignores columns it was not fitted on only
    if they are dropped too, so they are removed in place.
    """
    shared = [c for c in reference.columns if all(c in cur.columns for cur in currents) or c in keep]
    dropped = sorted(set(reference.columns).union(*[set(cur.columns) for cur in currents]) - set(shared))
    for cur in currents:
        cur.drop(columns=[c for c in cur.columns if c not in shared], inplace=True)
    return reference[shared], dropped
