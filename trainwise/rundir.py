"""The run directory: the contract between stages (see docs/architecture.md).

Everything here writes atomically (trainwise.fileio: a temporary file in the same directory, then
`os.replace`), so an interrupted process never leaves a half-written file behind, and models are
saved without pickle: tensors in safetensors, everything else in JSON.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainwise.errors import ConfigError, DataError, TrainwiseError

# Re-exported: the run directory's file API (`from trainwise.rundir import write_json`), wherever it lives.
from trainwise.fileio import (  # noqa: F401
    WriteError,
    file_sha256,
    read_json,
    save_tensors_atomic,
    write_atomic,
    write_failure_reason,
    write_json,
)
from trainwise.seal import (  # noqa: F401  (MODEL_*, REFERENCE_FILE re-exported as well)
    MODEL_JSON,
    MODEL_WEIGHTS,
    REFERENCE_FILE,
    find_model_dir,
    read_model_dir,
    recorded_entry,
    write_manifest,
)
from trainwise.train.ac import CheckpointedBlock

# ---------------------------------------------------------------------------------------------
# model/ : weights.safetensors + model.json
#
# The saved weights carry the names of the plain model, the one `build_model_from_spec(spec)`
# returns, whatever wrapped it during training. Every stage loads them through `load_model`.


def _wrapper_types() -> list[tuple[type, str]]:
    """Module types that only wrap one inner module, with the attribute that holds it.

    That attribute is no part of a name in the plain model: trainwise's activation checkpointing
    (CheckpointedBlock.block), torch's checkpoint_wrapper (`_checkpoint_wrapped_module`),
    torch.compile of a whole module (OptimizedModule `_orig_mod`) and DDP (`module`). FSDP2 shards
    in place and FP8 swaps nn.Linear for Float8Linear with the same parameter names: neither adds
    a level. torch's own `get_model_state_dict` skips the same levels (except trainwise's block).
    """
    found = [(CheckpointedBlock, "block"), (DistributedDataParallel, "module")]
    # Imported only when already loaded: a model cannot hold an instance of a class nobody imported.
    if "torch._dynamo.eval_frame" in sys.modules:
        found.append((sys.modules["torch._dynamo.eval_frame"].OptimizedModule, "_orig_mod"))
    checkpoint_wrapper = sys.modules.get("torch.distributed.algorithms._checkpoint.checkpoint_wrapper")
    if checkpoint_wrapper is not None:
        found.append((checkpoint_wrapper.ActivationWrapper, "_checkpoint_wrapped_module"))
    return found


def _plain_names(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name in the plain model, tensor object) of every parameter and buffer, wrapper levels skipped."""
    wrappers = _wrapper_types()

    def walk(module: nn.Module, prefix: str):
        yield from ((prefix + n, t) for n, t in module._parameters.items() if t is not None)
        yield from ((prefix + n, t) for n, t in module._buffers.items() if t is not None)
        inner = next((attr for cls, attr in wrappers if isinstance(module, cls)), None)
        for n, child in module._modules.items():
            if child is not None:
                yield from walk(child, prefix if n == inner else f"{prefix}{n}.")

    yield from walk(model, "")


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state_dict under the names of the plain model (no wrapper prefixes).

    Each tensor object of the state_dict is mapped back to its position in the module tree, so the
    names come from the structure, not from editing strings: a wrapper that state_dict hooks
    already renamed (torch's checkpoint_wrapper) maps right too. Tensors are as the model holds
    them (DTensor shards under FSDP2; state_dict() first puts FSDP2's parameters back in their
    sharded fp32 form, so this never reads the bf16 copies gathered for a forward).
    """
    held = {id(t): t for t in model.state_dict(keep_vars=True).values()}
    out = {name: held[id(t)] for name, t in _plain_names(model) if id(t) in held}
    if len({id(t) for t in out.values()}) != len(held):
        raise TrainwiseError(
            f"{type(model).__name__}: some entries of its state_dict are not parameters or buffers of its modules; "
            "cannot name them in the plain model"
        )
    return out


def plain_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape in the plain model (global shapes: a DTensor shard reports the full shape)."""
    return {name: tuple(t.shape) for name, t in plain_state(model).items()}


def clean_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights as the plain model names them, full (not sharded) and in fp32.

    Under FSDP2 every rank must call this: `full_tensor()` all-gathers each shard.
    """
    out = {}
    for name, t in plain_state(model).items():
        if hasattr(t, "full_tensor"):  # a DTensor shard under FSDP2
            t = t.full_tensor()
        out[name] = t.detach().float() if t.is_floating_point() else t.detach()
    return out


def spec_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the state_dict of the model that `spec` rebuilds (built on the meta device)."""
    # lazy: workloads.base imports pandas; every CLI verb loads this module
    from trainwise.workloads.base import build_model_from_spec

    with torch.random.fork_rng(devices=[]):  # building a model must not move the training run's RNG
        try:
            with torch.device("meta"):  # shapes only: no memory, no initialisation work
                model = build_model_from_spec(spec)
        except TrainwiseError:
            raise
        except Exception:  # a builder that cannot run on the meta device: build it for real
            try:
                model = build_model_from_spec(spec)
            except TrainwiseError:
                raise
            except Exception as e:  # the user's builder failed (e.g. it is not a model builder at all)
                raise ConfigError(
                    f"builder {spec.get('builder')!r} failed with kwargs {spec.get('kwargs', {})}: {type(e).__name__}: "
                    f"{e}"
                ) from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"builder {spec.get('builder')!r} returned {type(model).__name__}, not a torch.nn.Module")
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def describe_misfit(have: dict[str, tuple], want: dict[str, tuple]) -> str | None:
    """None when `have` and `want` (name -> shape) agree; else what differs, briefly."""
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = [f"{k} {have[k]} vs {want[k]}" for k in sorted(set(have) & set(want)) if tuple(have[k]) != tuple(want[k])]
    if not (missing or unexpected or wrong):
        return None
    parts = [
        f"{label} ({len(items)}): {items[:3]}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
        if items
    ]
    return "; ".join(parts)


_SPEC_HINT = "make Workload.spec rebuild the model you train: {'builder': 'package.module:function', 'kwargs': {...}}"


def check_fits_spec(shapes: dict[str, tuple], spec: dict, what: str) -> None:
    """Refuse weights (name -> shape) that would not load into the model `spec` rebuilds."""
    try:
        want = spec_shapes(spec)
    except TrainwiseError as e:
        raise ConfigError(f"{what}: model.json's spec cannot rebuild the model ({e}); {_SPEC_HINT}") from None
    misfit = describe_misfit(shapes, want)
    if misfit:
        raise TrainwiseError(
            f"{what}: the weights do not fit the model that model.json's spec rebuilds "
            f"(builder {spec.get('builder')!r}): {misfit}. If the workload is your own, {_SPEC_HINT}"
        )


class NonFiniteWeightsError(TrainwiseError):
    """The weights hold NaN or infinity: the training diverged, and they are no model."""


def check_finite_weights(state: dict[str, torch.Tensor], weights: Path) -> None:
    """Refuse, before anything is written, weights that hold NaN or infinity."""
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise NonFiniteWeightsError(
            f"refusing to write {weights}: {len(bad)} of {len(state)} weight tensors hold NaN or infinity (first: "
            f"{bad[0]}); the training diverged (a learning rate too high? see metrics.jsonl), so the run failed and no "
            "model was saved"
        )


def save_model(model: nn.Module, model_dir: str | Path, meta: dict) -> None:
    """Write model/weights.safetensors, model/model.json (spec, task, info, weights hash) and
    model/manifest.json (the sha256 of each file, checked on every load: trainwise.seal).

    The weights are checked against `meta["spec"]` first: what could not be loaded back is
    refused before anything is written. A reference.parquet left from earlier weights is removed:
    it holds their predictions, not these.
    """
    model_dir = Path(model_dir)
    weights = model_dir / MODEL_WEIGHTS
    state = clean_state_dict(model)
    check_fits_spec({k: tuple(v.shape) for k, v in state.items()}, meta["spec"], f"refusing to write {weights}")
    check_finite_weights(state, weights)
    save_tensors_atomic(state, weights)
    (model_dir / REFERENCE_FILE).unlink(missing_ok=True)
    (model_dir / "reference_profile.json").unlink(missing_ok=True)  # the profile of that reference (monitor)
    write_json(model_dir / MODEL_JSON, {**meta, "weights_sha256": file_sha256(weights)})
    write_manifest(model_dir)


def load_model(model_dir: str | Path, verify: bool = True, registered: dict | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the model from model.json's spec and load its weights; returns (model in eval mode, meta).

    The one loader of saved models: evaluate, compare, register, serve, export, the monitor's
    retraining and `model.init_from` all come through here. `model_dir` may be a run directory
    (its model/ is used). With `verify`, a folder whose files differ from their seal is refused
    (see `read_model_dir`; pass a registered version's meta["registry"] as `registered`). The
    builder model.json names must be built in or come from the entry point the model was trained
    with (`check_builder_trusted`), whatever `verify` says: it is code, and it runs. Every
    parameter and buffer must be present with its shape.
    """
    # lazy: workloads.base imports pandas; every CLI verb loads this module
    from trainwise.workloads.base import build_model_from_spec, check_builder_trusted

    model_dir, meta = read_model_dir(model_dir, verify, registered)
    entry = str(registered.get("entry") or "") if registered else recorded_entry(model_dir)
    check_builder_trusted(meta["spec"].get("builder"), entry, f"{model_dir / MODEL_JSON}")
    try:
        model = build_model_from_spec(meta["spec"])
    except TrainwiseError:
        raise
    except Exception as e:  # the builder itself failed (kwargs it does not take, ...)
        raise DataError(
            f"{model_dir / MODEL_JSON}: builder {meta['spec'].get('builder')!r} failed with kwargs "
            f"{meta['spec'].get('kwargs', {})}: {type(e).__name__}: {e}"
        ) from None
    weights = model_dir / MODEL_WEIGHTS
    try:
        saved = load_file(weights)
    except Exception as e:  # safetensors raises its own error type for a damaged file
        raise DataError(f"{weights} is not a readable safetensors file: {type(e).__name__}: {e}") from None
    misfit = describe_misfit(
        {k: tuple(v.shape) for k, v in saved.items()}, {k: tuple(v.shape) for k, v in model.state_dict().items()}
    )
    if misfit:
        raise DataError(
            f"{weights} does not fit the architecture in {MODEL_JSON} (builder {meta['spec'].get('builder')!r}): "
            f"{misfit}"
        )
    model.load_state_dict(saved, strict=True)
    return model.eval(), meta


def load_weights_into(model: nn.Module, model_dir: str | Path, what: str = "model.init_from") -> dict:
    """Copy a saved model's weights into `model` (same architecture); returns its model.json.

    The saved model is read by `load_model`. Every parameter and buffer of `model` must be present
    with the same shape: a partial load would silently train a half-initialised model.
    """
    try:
        saved_model, meta = load_model(model_dir, verify=True)
    except DataError as e:
        raise DataError(f"{what} = {str(model_dir)!r}: {e}") from None
    saved = saved_model.state_dict()
    misfit = describe_misfit({k: tuple(v.shape) for k, v in saved.items()}, plain_shapes(model))
    if misfit:
        raise DataError(
            f"{what} = {str(model_dir)!r}: its weights do not fit this model ({misfit}; shapes are saved vs this "
            "model); train from it with the same workload and model settings"
        )
    model.load_state_dict(saved, strict=True)
    return meta
