"""Sealing a model folder: the sha256 of every file, checked before any byte of it is used.

A model folder (a run's model/, or a registered version's artifact) holds model.json,
weights.safetensors and, once written, reference.parquet. When the trainer saves the model,
`write_manifest` records each file's sha256 in model/manifest.json; registration copies those
hashes into the registry's tags. `check_sealed` compares the files with a `Seal` before model.json
is parsed, so an edited or corrupted file is refused with the file named. model.json matters as
much as the weights: its `spec.builder` names code that loading runs.

Where a seal comes from decides what it protects against (docs/registry.md, "What is trusted"):
the registry's tags are out of reach of whoever can only write the artifact store; a run
directory's manifest.json sits beside the files it describes, so it catches corruption and edits
of model/ alone, not someone who can rewrite the whole run directory.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from trainwise.errors import DataError, TrainwiseError
from trainwise.fileio import file_sha256, write_atomic, write_json

MODEL_WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
REFERENCE_FILE = "reference.parquet"  # the monitor's training reference (trainwise.monitor.reference)
REFERENCE_PROFILE = "reference_profile.json"  # its mergeable profile (trainwise.monitor.sketch)
MANIFEST = "manifest.json"
# what a model folder may hold
SEALED_FILES = (MODEL_JSON, MODEL_WEIGHTS, REFERENCE_FILE, REFERENCE_PROFILE)


@dataclass(frozen=True)
class Seal:
    """What a model folder must hold, and which entry point its builder may come from.

    files:  file name -> sha256, for every file of SEALED_FILES the folder must hold (no other)
    entry:  `workload.entry` of the training run ('' for a built-in workload); a model.json builder
            of the form 'module:function' must come from its top-level package (trainwise.workloads.base)
    source: where the seal was recorded, for messages ("model/manifest.json", "the registry (...)")
    """

    files: dict
    entry: str
    source: str

    @property
    def sha256(self) -> str:
        return files_digest(self.files)


def files_digest(files: dict) -> str:
    """One sha256 for a folder: of the canonical JSON of {file name: sha256}.

    >>> files_digest({"b": "2", "a": "1"}) == files_digest({"a": "1", "b": "2"})
    True
    """
    return hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder_hashes(model_dir: Path) -> dict[str, str]:
    """{file name: sha256} of the sealed files present in `model_dir`."""
    return {name: file_sha256(model_dir / name) for name in SEALED_FILES if (model_dir / name).is_file()}


def write_manifest(model_dir: Path) -> Seal:
    """Record the sha256 of the folder's files in model_dir/manifest.json; returns the new seal."""
    files = folder_hashes(model_dir)
    write_json(model_dir / MANIFEST, {"sha256": files_digest(files), "files": files})
    return Seal(files, recorded_entry(model_dir), str(model_dir / MANIFEST))


def read_seal(model_dir: Path) -> Seal:
    """The seal a folder carries: its manifest.json, and the entry point of the run it belongs to."""
    path = model_dir / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{model_dir} has no {MANIFEST} (the sha256 of each file, written when trainwise saves a model); "
            "it was not written by this version of trainwise: train it again, or load the registered version"
        )
    try:
        files = json.loads(path.read_bytes())["files"]
    except (ValueError, KeyError, TypeError):
        raise DataError(
            f'{path} is not a trainwise manifest (expected {{"files": {{name: sha256}}}}); refusing to load {model_dir}'
        ) from None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise DataError(f"{path}: 'files' must map file names to sha256 strings; refusing to load {model_dir}")
    return Seal(files, recorded_entry(model_dir), str(path))


def registered_seal(registered: dict) -> Seal:
    """The seal a registry recorded for a version: `registered` is a loaded model's meta["registry"]."""
    where = f"the registry (model {registered.get('name')!r} version {registered.get('version')})"
    files = registered.get("model_files")
    if not isinstance(files, dict) or not files:
        raise DataError(
            f"{where} recorded no file hashes for it: it was registered before trainwise sealed model folders; "
            "register its run directory again"
        )
    return Seal(files, str(registered.get("entry") or ""), where)


def check_sealed(model_dir: Path, seal: Seal, model_json: bytes | None = None) -> None:
    """Refuse a folder whose sealed files differ from `seal`: a changed, missing or added file.

    `model_json` are the bytes of model.json the caller is about to parse (read once, so the file
    cannot change between this check and its use); None reads the file.
    """
    actual = folder_hashes(model_dir)
    if model_json is not None:
        actual["model.json"] = bytes_sha256(model_json)
    for name in SEALED_FILES:
        want, have = seal.files.get(name), actual.get(name)
        if want == have:
            continue
        if want is None:
            why = f"is not recorded in {seal.source}: it was added after the model was sealed"
        elif have is None:
            why = f"is missing, but {seal.source} records it"
        else:
            why = (
                f"does not match the hash recorded in {seal.source} (sha256 {have[:12]}..., recorded {want[:12]}...): "
                "the file was modified or corrupted"
            )
        raise DataError(f"{model_dir / name} {why}; refusing to load it")
    unknown = sorted(set(seal.files) - set(SEALED_FILES))
    if unknown:
        raise DataError(
            f"{seal.source} records files a model folder does not hold ({', '.join(unknown)}); refusing to load "
            f"{model_dir}"
        )


def recorded_entry(model_dir: Path) -> str:
    """`workload.entry` of the run a model/ folder belongs to ('' for a built-in workload or no run).

    Read from the run's config.toml beside model/ (the folder of a registered version has none;
    its entry point is a registry tag instead).
    """
    model_dir = Path(model_dir)
    config = model_dir.parent / "config.toml"
    if model_dir.name != "model" or not config.is_file():
        return ""
    try:
        workload = tomllib.loads(config.read_text()).get("workload", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DataError(
            f"{config} is not valid TOML ({e}); cannot tell which entry point trained {model_dir}"
        ) from None
    if not isinstance(workload, dict) or workload.get("name") != "entry":
        return ""
    return str(workload.get("entry") or "")


def find_model_dir(model_dir: str | Path) -> Path:
    """The model folder of a model or run directory (a run directory's model/)."""
    model_dir = Path(model_dir)
    if (model_dir / "model" / MODEL_JSON).is_file():
        model_dir = model_dir / "model"
    if not (model_dir / MODEL_JSON).is_file():
        raise DataError(
            f"{model_dir} holds no model (expected {MODEL_JSON} and {MODEL_WEIGHTS}; is it a finished run directory?)"
        )
    return model_dir


def read_model_dir(model_dir: str | Path, verify: bool = True, registered: dict | None = None) -> tuple[Path, dict]:
    """(model folder, model.json contents) of a model or run directory, its files checked first.

    With `verify`, every file is compared with its seal before model.json is parsed: the hashes
    the registry recorded for a registered version (`registered`, a loaded meta's "registry"),
    else the folder's manifest.json. model.json is read once, so what was checked is what is used.
    """
    model_dir = find_model_dir(model_dir)
    raw = (model_dir / MODEL_JSON).read_bytes()
    if not (model_dir / MODEL_WEIGHTS).is_file():
        raise DataError(f"{model_dir / MODEL_WEIGHTS} is missing")
    if verify:
        check_sealed(model_dir, registered_seal(registered) if registered else read_seal(model_dir), raw)
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{model_dir / MODEL_JSON} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise DataError(
            f"{model_dir / MODEL_JSON} has no 'spec' object (builder and kwargs); it was not written by trainwise"
        )
    return model_dir, meta


def add_model_file(model_dir: str | Path, name: str, data: bytes) -> None:
    """Write one more file into a saved model folder and record its hash in manifest.json.

    The folder is checked against its manifest first, so that re-sealing never blesses a file
    changed since the model was saved.
    """
    model_dir = Path(model_dir)
    if name not in SEALED_FILES:
        raise TrainwiseError(f"{name} is not a file of a model folder (expected one of {', '.join(SEALED_FILES)})")
    check_sealed(model_dir, read_seal(model_dir))
    write_atomic(model_dir / name, data)
    write_manifest(model_dir)
