"""What a workload is: a model, its data splits, its task, and how to rebuild the model later.

A workload function takes the resolved `Config` and returns a `Workload`. The trainer, the
evaluator and the server only ever see this structure, so a user's own model plugs in by
returning one (see `trainwise.workloads.user`).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from trainwise.errors import ConfigError, DataError
from trainwise.workloads.inputs import check_split_matches, validate_input_spec

TASKS = ("lm", "classification")


@dataclass
class Split:
    """One split of the data, held in memory as tensors.

    inputs:  (N, ...) model inputs; for lm (N, T) byte ids, for tabular (N, F) float features
    targets: (N,) class ids, or (N, T) next-byte ids for lm
    ids:     (N,) stable example ids (evaluation matches examples across runs by id)
    meta:    optional per-example columns (slices such as region or source-file group), N rows
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    ids: np.ndarray | None = None
    meta: pd.DataFrame | None = None

    def __post_init__(self):
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"Split: {len(self.inputs)} inputs but {len(self.targets)} targets")
        if self.ids is None:
            self.ids = np.arange(len(self.inputs))

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]


@dataclass
class Workload:
    """Everything the trainer needs, plus what is needed to rebuild and serve the model.

    spec: JSON-serialisable description written to model/model.json; `build_model_from_spec`
          turns it back into an untrained module of the same architecture (no pickle).
    info: JSON-serialisable extras: class names, feature names, slice columns.
    input: what one example is (trainwise.workloads.inputs: a table, a tensor or tokens); serving,
           export, robustness checks and the monitor build on it. Written to model.json.
    shifted: optional data from another distribution than train/val/test (a later period, another
           site, another device); `trainwise evaluate` reports the metrics on it next to the clean
           ones, under robustness -> shifted_split. Never trained or validated on.
    """

    name: str
    task: str
    model: nn.Module
    train: Split
    val: Split
    test: Split
    spec: dict
    info: dict = field(default_factory=dict)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    block_classes: tuple[type, ...] = ()
    input: dict | None = None
    shifted: Split | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(f"workload {self.name!r}: task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.shifted is not None and not isinstance(self.shifted, Split):
            raise ConfigError(
                f"workload {self.name!r}: Workload.shifted is a {type(self.shifted).__name__}; expected a Split or None"
            )
        if self.input is not None:
            validate_input_spec(self.input, f"workload {self.name!r}: Workload.input")
            check_split_matches(self.input, self.train.inputs, f"workload {self.name!r}")
            if self.shifted is not None:
                check_split_matches(self.input, self.shifted.inputs, f"workload {self.name!r}: Workload.shifted")
        if self.loss_fn is None:
            self.loss_fn = cross_entropy_loss

    @property
    def units_per_example(self) -> int:
        """Tokens per example for lm (throughput in tokens/s), 1 otherwise (samples/s)."""
        return int(self.train.targets.shape[1]) if self.task == "lm" else 1


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in fp32 whatever the compute dtype (low-precision softmax loses bits)."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


# ---------------------------------------------------------------------------------------------
# registry of built-in workloads and of model builders

WORKLOADS: dict[str, Callable[..., Workload]] = {}
MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_workload(name: str):
    """Decorator: make `fn(cfg) -> Workload` available as `workload.name = name`."""

    def deco(fn):
        WORKLOADS[name] = fn
        return fn

    return deco


def register_model(name: str):
    """Decorator: make `fn(**kwargs) -> nn.Module` rebuildable from model.json's `builder`."""

    def deco(fn):
        MODEL_BUILDERS[name] = fn
        return fn

    return deco


def get_workload_fn(name: str) -> Callable[..., Workload]:
    _import_builtins()
    if name not in WORKLOADS:
        close = difflib.get_close_matches(name, list(WORKLOADS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"workload.name = {name!r} is not a known workload{hint} (known: {', '.join(sorted(WORKLOADS))})"
        )
    return WORKLOADS[name]


def build_model_from_spec(spec: dict) -> nn.Module:
    """Rebuild an untrained model from a spec: {"builder": name, "kwargs": {...}}.

    For specs that come from code (a Workload being trained or benchmarked). A spec read from a
    file (model.json) goes through `trainwise.rundir.load_model`, which checks its builder with
    `check_builder_trusted` first: a builder names code to run.
    """
    _import_builtins()
    builder = spec.get("builder")
    if builder in MODEL_BUILDERS:
        return MODEL_BUILDERS[builder](**spec.get("kwargs", {}))
    if isinstance(builder, str) and ":" in builder:  # a user's "package.module:function"
        # lazy: trainwise.workloads.user imports this module (the workload registry; docs/architecture.md)
        from trainwise.workloads.user import import_entry

        return import_entry(builder)(**spec.get("kwargs", {}))
    raise ConfigError(
        f"model spec names builder {builder!r}, which is not known (known: {', '.join(sorted(MODEL_BUILDERS))})"
    )


# ---------------------------------------------------------------------------------------------
# which builders a saved model may name
#
# Loading a model calls its builder with model.json's kwargs, so a builder such as `os:system`
# would run a command. A saved model's builder is therefore resolved only from MODEL_BUILDERS,
# from the top-level package of the entry point the model was trained with (recorded in the run's
# config.toml, and in the registry's tags at registration), or from modules the operator names
# in $TRAINWISE_TRUSTED_BUILDERS. Docs: docs/registry.md, "What is trusted".

TRUSTED_BUILDERS_ENV = "TRAINWISE_TRUSTED_BUILDERS"
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def trusted_modules(entry: str) -> list[str]:
    """Modules (with their submodules) a 'module:function' builder may come from.

    The top-level package of the training run's entry point, unless that is the standard library
    or trainwise itself (no workload lives there, and `os:system` or `trainwise.rundir:write_atomic`
    would run a command or write a file), then each module listed, comma-separated, in
    $TRAINWISE_TRUSTED_BUILDERS.

    >>> trusted_modules("mypkg.workloads:make")
    ['mypkg']
    >>> trusted_modules("os:system")
    []
    """
    found = []
    top = entry.split(":", 1)[0].split(".", 1)[0] if entry else ""
    if top and _MODULE.fullmatch(top) and top not in sys.stdlib_module_names and top != "trainwise":
        found.append(top)
    for item in os.environ.get(TRUSTED_BUILDERS_ENV, "").split(","):
        if item.strip():
            if not _MODULE.fullmatch(item.strip()):
                raise ConfigError(
                    f"${TRUSTED_BUILDERS_ENV} item {item.strip()!r}: expected a module name such as mypkg.models "
                    "(comma-separated)"
                )
            found.append(item.strip())
    return found


def check_builder_trusted(builder, entry: str, where: str) -> None:
    """Refuse a saved model's builder that is neither built in, nor from the trained entry point's
    package, nor named in $TRAINWISE_TRUSTED_BUILDERS; nothing is imported before the check."""
    _import_builtins()
    if isinstance(builder, str) and builder in MODEL_BUILDERS:
        return
    module, _, function = builder.partition(":") if isinstance(builder, str) else ("", "", "")
    if not (_MODULE.fullmatch(module) and function.isidentifier()):
        raise DataError(
            f"{where}: builder {builder!r} is neither a built-in model ({', '.join(sorted(MODEL_BUILDERS))}) "
            "nor 'package.module:function'; refusing to load it"
        )
    trusted = trusted_modules(entry)
    if any(module == t or module.startswith(t + ".") for t in trusted):
        return
    source = (
        f"the package of the entry point the model was trained with ({entry})"
        if entry
        else "an entry point of the run (a built-in workload trained it)"
    )
    raise DataError(
        f"{where}: builder {builder!r} is neither a built-in model nor from {source}; refusing to import and run it. "
        f"If you trust module {module!r}, set {TRUSTED_BUILDERS_ENV}={module}"
    )


def _import_builtins() -> None:
    # lazy: the builtins import this module (the workload registry, docs/architecture.md): imported here, not
    # at module top, so that `base` stays importable from them
    from trainwise.workloads import lm, tabular, user, vision  # noqa: F401


def describe(workload: Workload) -> dict[str, Any]:
    n_params = sum(p.numel() for p in workload.model.parameters())
    return {
        "workload": workload.name,
        "task": workload.task,
        "n_params": n_params,
        "n_train": len(workload.train),
        "n_val": len(workload.val),
        "n_test": len(workload.test),
    }


def fingerprint_split(split: Split) -> str:
    """A content hash (sha256) of a split's inputs, targets and ids: provenance for env.json and the registry."""
    h = hashlib.sha256()
    for t in (split.inputs, split.targets):
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(np.asarray(split.ids).tobytes())
    return h.hexdigest()
