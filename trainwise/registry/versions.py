"""Registered model versions: register a run directory, look a version up, load it back verified.

A version's artifacts are the run's model/ (weights.safetensors + model.json, never pickle, with
reference.parquet and manifest.json), its eval/ (the registered evaluation data that `promote`
gates on) and its training reference (model/reference.parquet again, the monitor's default
reference; trainwise.monitor.reference), logged to the run's MLflow run under content-addressed
paths (`registry/model-<sha12>`), so registering never overwrites what an earlier version points to.

Registration records the sha256 of every file of model/ (tag `trainwise.model_files`) and the
run's entry point (`trainwise.entry`) in the registry; loading a version checks the downloaded
files against those tags before model.json is parsed, and resolves its builder from that entry
point only (docs/registry.md, "What is trusted").
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from trainwise.errors import DataError, TrainwiseError
from trainwise.registry.lineage import EVAL_FILES, TAG, check_model_dir, collect_lineage, dir_sha256
from trainwise.registry.store import RegistryError, get_client
from trainwise.registry.tracking import log_run_to_mlflow, logged_run_id
from trainwise.rundir import MODEL_JSON, file_sha256, load_model
from trainwise.seal import MANIFEST, REFERENCE_FILE, SEALED_FILES, Seal, check_sealed, read_model_dir, read_seal


def _log_files(
    client, run_id: str, src: Path, names: tuple[str, ...], artifact_path: str, expected: dict | None = None
) -> None:
    """Log only `names` of `src` (no stray files) under `artifact_path`, unless already there.

    With `expected` ({name: sha256}), the copies are checked before they are logged: a file
    changed after it was verified never reaches the registry under the verified hashes.
    """
    if client.list_artifacts(run_id, artifact_path):
        return  # content-addressed: same path, same bytes
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if (src / name).is_file():
                shutil.copy2(src / name, Path(tmp) / name)
        if expected is not None:
            check_sealed(Path(tmp), Seal(expected, "", f"the hashes verified in {src}"))
        client.log_artifacts(run_id, tmp, artifact_path)


def register_run(run_dir: str | Path, name: str, tracking_uri: str | None = None, experiment: str = "trainwise"):
    """Register `run_dir`'s model as a new version of `name`; returns the MLflow ModelVersion.

    Everything is checked before anything is written, so bad input leaves the registry unchanged.
    """
    # lazy: mlflow takes seconds to import; every CLI verb loads this module
    from mlflow.exceptions import MlflowException

    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist")
    check_name(name)
    meta = _check_loads(run_dir / "model")
    lineage = collect_lineage(run_dir, meta)
    missing_reference = ensure_reference(run_dir)
    if missing_reference:
        lineage[TAG + "reference_missing"] = missing_reference[:500]
    seal = read_seal(
        run_dir / "model"
    )  # with the reference ensure_reference may have added; the copies logged are checked against it
    lineage.update(
        {
            TAG + "model_sha256": seal.sha256,
            TAG + "model_files": json.dumps(seal.files, sort_keys=True),
            TAG + "entry": seal.entry,
        }
    )
    client = get_client(tracking_uri)
    run_id = logged_run_id(run_dir, client) or log_run_to_mlflow(run_dir, client.tracking_uri, experiment)
    model_path = f"registry/model-{seal.sha256[:12]}"
    _log_files(client, run_id, run_dir / "model", SEALED_FILES + (MANIFEST,), model_path, seal.files)
    if (run_dir / "eval" / "metrics.json").is_file():
        eval_path = f"registry/eval-{dir_sha256(run_dir / 'eval', EVAL_FILES)[:12]}"
        _log_files(client, run_id, run_dir / "eval", EVAL_FILES, eval_path)
        lineage[TAG + "eval_artifact"] = eval_path
    lineage.update(_log_reference(client, run_id, run_dir))
    try:
        client.create_registered_model(name, tags={TAG + "workload": lineage[TAG + "workload"]})
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    artifact_uri = client.get_run(run_id).info.artifact_uri
    return client.create_model_version(name, f"{artifact_uri}/{model_path}", run_id=run_id, tags=lineage)


def _check_loads(model_dir: Path) -> dict:
    """model.json of a run's model/, after checking its files against their manifest and loading it:
    a model that `load_model` (serve, export, evaluate) could not load is never registered."""
    try:
        meta = check_model_dir(model_dir)
        load_model(model_dir, verify=True)
    except DataError as e:
        raise DataError(f"refusing to register {model_dir.parent}: {e}") from None
    return meta


def ensure_reference(run_dir: Path) -> str | None:
    """Make sure the run has model/reference.parquet (runs trained before it existed get one built
    from their config.toml); returns why not when it cannot be built (the version is registered anyway)."""
    # lazy: monitor.reference imports this module back (a registered version's reference), and pandas
    from trainwise.monitor.reference import build_run_reference

    if (run_dir / "model" / REFERENCE_FILE).is_file():
        return None
    try:
        return None if build_run_reference(run_dir) else "the model declares no input spec"
    except TrainwiseError as e:
        return str(e)


def _log_reference(client, run_id: str, run_dir: Path) -> dict:
    """Log model/reference.parquet under a content-addressed path; the tags that find and check it."""
    path = run_dir / "model" / REFERENCE_FILE
    if not path.is_file():
        return {}
    sha = file_sha256(path)
    artifact = f"registry/reference-{sha[:12]}"
    _log_files(client, run_id, path.parent, (REFERENCE_FILE,), artifact)
    return {TAG + "reference_artifact": artifact, TAG + "reference_sha256": sha}


def download_reference(client, mv) -> Path:
    """Local path of a version's training reference, its hash checked; a clear error when it has none."""
    # lazy: mlflow, as in register_run
    import mlflow.artifacts

    artifact = mv.tags.get(TAG + "reference_artifact")
    if not artifact:
        why = mv.tags.get(TAG + "reference_missing") or "it was registered before training references existed"
        raise DataError(
            f"model {mv.name!r} version {mv.version} has no training reference ({why}); give --reference FILE or "
            "RUN_DIR"
        )
    uri = f"{client.get_run(mv.run_id).info.artifact_uri}/{artifact}"
    path = (
        Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=client.tracking_uri)) / REFERENCE_FILE
    )
    if file_sha256(path) != mv.tags.get(TAG + "reference_sha256"):
        raise DataError(
            f"model {mv.name!r} version {mv.version}: {path} does not match the hash recorded at registration; "
            "refusing to use it"
        )
    return path


def check_name(name: str) -> None:
    if not name or "/" in name or "@" in name or name.strip() != name:
        raise RegistryError(
            f"model name {name!r} is not valid: use letters, digits, '-', '_' or '.', without '/' or '@'"
        )


def list_models(client) -> list[str]:
    return sorted(m.name for m in client.search_registered_models(max_results=1000))


def get_model(client, name: str):
    """The registered model `name`, or an error that lists the registered ones."""
    # lazy: mlflow, as in register_run
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    known = list_models(client)
    raise RegistryError(
        f"no registered model named {name!r} in {client.tracking_uri} (registered: {', '.join(known) or 'none'})"
    )


def list_versions(client, name: str) -> list[str]:
    versions = client.search_model_versions(f"name = '{name}'", max_results=10000)
    return sorted((str(v.version) for v in versions), key=int)


def get_version(client, name: str, version: str | int):
    """Model version `name`/`version`, or an error that lists the versions that exist."""
    # lazy: mlflow, as in register_run
    from mlflow.exceptions import MlflowException

    get_model(client, name)
    try:
        return client.get_model_version(name, str(int(version)))
    except (ValueError, MlflowException):
        pass
    raise RegistryError(
        f"model {name!r} has no version {version!r} (versions: {', '.join(list_versions(client, name)) or 'none'})"
    )


def get_alias_version(client, name: str, alias: str):
    """The version holding `alias`, or an error that lists the aliases `name` has."""
    model = get_model(client, name)
    if alias not in model.aliases:
        held = ", ".join(f"{a} -> v{v}" for a, v in sorted(model.aliases.items())) or "none"
        raise RegistryError(f"model {name!r} has no alias {alias!r} (aliases: {held})")
    return client.get_model_version(name, str(model.aliases[alias]))


def download_version(client, mv, what: str = "model") -> Path | None:
    """Local folder with a version's model/ or eval/ artifacts (a local store's files are not copied)."""
    # lazy: mlflow, as in register_run
    import mlflow.artifacts

    if what == "model":
        uri = mv.source
    else:
        eval_path = mv.tags.get(TAG + "eval_artifact")
        if not eval_path:
            return None
        uri = f"{client.get_run(mv.run_id).info.artifact_uri}/{eval_path}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=client.tracking_uri))


def registered_record(mv) -> dict:
    """What the registry recorded for a version that its files must match: its file hashes and the
    entry point it was trained with (a loaded meta's "registry" carries these; `load_model` checks them)."""
    try:
        files = json.loads(mv.tags.get(TAG + "model_files") or "null")
    except ValueError:
        files = None
    if not isinstance(files, dict) or not files:
        raise DataError(
            f"model {mv.name!r} version {mv.version} was registered before trainwise recorded the hash of every model "
            "file (model.json included); register its run directory again"
        )
    return {
        "name": mv.name,
        "version": str(mv.version),
        "model_sha256": mv.tags.get(TAG + "model_sha256", ""),
        "model_files": files,
        "entry": mv.tags.get(TAG + "entry", ""),
    }


def resolve_model_ref(ref: str | Path, tracking_uri: str | None = None) -> tuple[Path, dict]:
    """`"NAME@ALIAS"`, `"NAME/VERSION"` or a run directory -> (verified model folder, model.json meta).

    The meta of a registered version also carries `registry` = {name, version, alias, tracking_uri}.
    """
    text = str(ref)
    if Path(text).exists():
        path = Path(text).resolve()
        model_dir = path if (path / MODEL_JSON).is_file() else path / "model"
        return model_dir, check_model_dir(model_dir)
    if "@" in text:
        name, alias = text.split("@", 1)
    elif "/" in text and text.count("/") == 1 and text.rsplit("/", 1)[1].isdigit() and not text.startswith((".", "/")):
        name, alias = text.rsplit("/", 1)
    elif "/" in text or text.startswith("."):
        raise DataError(
            f"run directory {text} does not exist (a model reference is a run directory, NAME@ALIAS or NAME/VERSION)"
        )
    else:
        raise DataError(f"model reference {text!r} is neither an existing run directory nor NAME@ALIAS / NAME/VERSION")
    client = get_client(tracking_uri)
    mv = get_alias_version(client, name, alias) if "@" in text else get_version(client, name, alias)
    record = registered_record(mv)
    model_dir = download_version(client, mv)
    if not (model_dir / MODEL_JSON).is_file():
        raise DataError(
            f"model {name!r} version {mv.version}: {model_dir} lacks {MODEL_JSON}; the registered artifact is gone or "
            "damaged"
        )
    model_dir, meta = read_model_dir(model_dir, verify=True, registered=record)
    meta["registry"] = {**record, "alias": alias if "@" in text else None, "tracking_uri": client.tracking_uri}
    return model_dir, meta


def load_model_by_alias(name: str, alias: str, tracking_uri: str | None = None):
    """(model in eval mode, meta) of the version holding `alias`, its files checked against the registry."""
    model_dir, meta = resolve_model_ref(f"{name}@{alias}", tracking_uri)
    model, _ = load_model(model_dir, verify=True, registered=meta["registry"])
    return model, meta
