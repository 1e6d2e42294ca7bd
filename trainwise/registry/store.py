"""Where the tracking store is, how to reach it, and the lock that serialises alias moves.

The store is MLflow's: by default the embedded `sqlite:///mlflow.db` in the working directory (no
server needed), or a shared MLflow server named by `--tracking-uri`, `registry.tracking_uri` or
`$MLFLOW_TRACKING_URI`, in that order of precedence. Model artifacts of a sqlite store live next to
the database in `mlartifacts/`, so the store is one folder that can be copied or backed up whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import urllib.parse
from pathlib import Path

from trainwise.config_checks import tracking_uri_problem
from trainwise.errors import TrainwiseError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class RegistryError(TrainwiseError):
    """The registry cannot do what was asked (unknown name/version/alias, unreachable store)."""


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.

    >>> resolve_tracking_uri("sqlite:////tmp/x.db")
    'sqlite:////tmp/x.db'
    """
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def config_tracking_uri(cfg) -> str:
    """The tracking URI a run with config `cfg` logs to: registry.tracking_uri, else as above.

    >>> from trainwise.config import load_config
    >>> config_tracking_uri(load_config(None, ["registry.tracking_uri=http://mlflow:5000"]))
    'http://mlflow:5000'
    """
    return resolve_tracking_uri(cfg.registry.tracking_uri or None)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for any other store.

    >>> str(sqlite_path("sqlite:////tmp/a/mlflow.db"))
    '/tmp/a/mlflow.db'
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///") :])
    return path if path.is_absolute() else path.resolve()


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifact location of an experiment of a sqlite store: `mlartifacts/<experiment>` next to the db.

    For a server, None: the server decides (it proxies artifacts to its own storage).
    """
    db = sqlite_path(uri)
    return (db.parent / "mlartifacts" / experiment).as_uri() if db is not None else None


def _how_to_fix(uri: str) -> str:
    return (
        f"start the server ('mlflow server --host HOST --port PORT'), or point --tracking-uri, "
        f"registry.tracking_uri or $MLFLOW_TRACKING_URI at a reachable one, or unset them to use the "
        f"local store {DEFAULT_TRACKING_URI}"
    )


def check_reachable(uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast, naming the URI and the fix, when the store cannot be reached.

    MLflow's own client retries an unreachable server for minutes (7 retries, exponential backoff)
    before failing, so a server is probed once on its /health endpoint first.
    """
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        # lazy: only an http(s) tracking store needs httpx; every CLI verb loads this module
        import httpx

        try:
            r = httpx.get(uri.rstrip("/") + "/health", timeout=timeout_s)
        except httpx.HTTPError as e:
            raise RegistryError(
                f"tracking server {uri} is unreachable ({type(e).__name__}: {e}); {_how_to_fix(uri)}"
            ) from None
        if r.status_code >= 400:
            raise RegistryError(f"tracking server {uri} answered {r.status_code} on /health; {_how_to_fix(uri)}")
    elif scheme == "sqlite":
        db = sqlite_path(uri)
        if db is None or not db.parent.is_dir():
            raise RegistryError(
                f"tracking store {uri}: folder {db.parent if db else '?'} does not exist; create it or use another "
                "--tracking-uri"
            )
    elif tracking_uri_problem(uri):  # the same rule registry.tracking_uri is held to when the config loads
        raise RegistryError(f"tracking URI {uri!r}: {tracking_uri_problem(uri)}")


def get_client(uri: str | None = None):
    """An MlflowClient for tracking and registry on the same store, after a reachability check."""
    uri = resolve_tracking_uri(uri)
    check_reachable(uri)
    # lazy: mlflow takes seconds to import; every CLI verb loads this module
    from mlflow import MlflowClient

    quiet_mlflow_logs()

    # Two processes creating a fresh sqlite schema at the same time race on its migrations, so the
    # first connection (which creates it) happens under the lock; a server migrates its own database.
    with move_lock(uri) if sqlite_path(uri) else contextlib.nullcontext():
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
    return client


def quiet_mlflow_logs() -> None:
    """Keep MLflow's INFO lines ("Creating initial MLflow database tables...") out of trainwise's
    output: its loggers (and alembic's, which runs its schema migrations) report warnings and errors
    only, unless the user asked for a level with $MLFLOW_LOGGING_LEVEL. Called before a client is made."""
    # lazy: mlflow, as in get_client; importing it configures its loggers: adjust them afterwards
    import mlflow  # noqa: F401

    if os.environ.get("MLFLOW_LOGGING_LEVEL"):
        return
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.WARNING))


def get_or_create_experiment(client, name: str) -> str:
    """The id of experiment `name`, created (with artifacts next to a sqlite db) if missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = artifact_location(client.tracking_uri, name)
    # lazy: mlflow, as in get_client
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created by a concurrent process in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# Set to False only by benchmarks/registry_concurrency.py to show what the lock prevents.
_LOCKING = True


@contextlib.contextmanager
def move_lock(uri: str):
    """An exclusive lock that serialises (read alias -> append audit entry -> set alias).

    Local sqlite store: `fcntl.flock` on `<db>.lock` next to the database, which every process on
    this machine sees. A shared server has no such file: there the lock file only orders processes of
    this machine, and concurrent promoters on several machines must be serialised outside (one CI
    job with a `concurrency:` group, or a database advisory lock on the server's Postgres; see
    docs/registry.md). The audit trail's hash chain still detects an interleaving afterwards.
    """
    if not _LOCKING:
        yield
        return
    db = sqlite_path(uri)
    if db is not None:
        lock_path = db.with_name(db.name + ".lock")
    else:
        key = urllib.parse.quote(uri, safe="")
        lock_path = Path.home() / ".cache" / "trainwise" / f"registry-{key}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
