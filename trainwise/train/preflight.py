"""Check a workload's model against its data before any run directory exists.

One dry forward and loss on a micro-batch: the output must be a tensor of the shape the task
needs, (B, n_classes) for classification and (B, T, V) for lm, and the loss a scalar. A model that
returns (B,), or 3 logits for 2 classes, is refused here with the expected shape, instead of a
traceback mid-training or a crash in a later `evaluate`.

The pass runs on fake tensors (torch's FakeTensorMode: shapes, no data, no compute), so it costs
nothing even for a large model; a model whose forward needs real values (`.item()`, data-dependent
shapes) falls back to a real forward in eval mode without gradients on the same micro-batch, under
a forked RNG so that the run's random stream is untouched. It uses no collectives: under DDP/FSDP2
every rank runs the same check on the same model and data and reaches the same verdict, so a
refusal never leaves other ranks waiting.
"""

from __future__ import annotations

import contextlib
import copy
import logging

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from trainwise.errors import ConfigError
from trainwise.workloads.base import Workload


def n_classes_of(workload: Workload) -> tuple[int, str]:
    """(number of classes, where it came from): info['classes'] when given, else 1 + the largest target."""
    classes = workload.info.get("classes")
    if classes:
        return len(classes), f"len(info['classes']) = {len(classes)}"
    top = _largest_target(workload)
    return top + 1, f"1 + the largest target id {top} (set info['classes'] if some class never occurs)"


def _largest_target(workload: Workload) -> int:
    return max(int(s.targets.max()) for s in (workload.train, workload.val, workload.test) if len(s))


def expected_shape(workload: Workload, batch_size: int) -> tuple[tuple, int, str]:
    """(shape with None for a free size, the least last size, the rule in words) for `batch_size` examples."""
    if workload.task == "lm":
        seq = int(workload.train.targets.shape[1])
        declared = getattr(workload, "input", None) or {}  # a tokens input spec declares its vocabulary too
        vocab = workload.info.get("vocab_size") or (
            declared.get("vocab_size") if declared.get("kind") == "tokens" else None
        )
        if vocab is None:
            top = _largest_target(workload)
            return (batch_size, seq, None), top + 1, f"(B, T, V) with V > the largest target id {top}"
        return (batch_size, seq, int(vocab)), int(vocab), f"(B, T, V) with V = vocab_size = {vocab}"
    n, why = n_classes_of(workload)
    return (batch_size, n), n, f"(B, n_classes) with n_classes = {why}"


def _shape_ok(shape: tuple, expected: tuple, least_last: int) -> bool:
    return (
        len(shape) == len(expected)
        and all(e is None or s == e for s, e in zip(shape, expected, strict=True))
        and shape[-1] >= least_last
    )


def check_targets(workload: Workload) -> None:
    """Class ids must index the model's outputs: 0 <= target < n_classes."""
    if workload.task != "classification":
        return
    n, why = n_classes_of(workload)
    for name in ("train", "val", "test"):
        t = getattr(workload, name).targets
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= n):
            raise ConfigError(
                f"workload {workload.name!r}: {name} targets range over [{int(t.min())}, {int(t.max())}] but the task "
                "has "
                f"{n} classes ({why}); expected class ids 0..{n - 1}"
            )


def _fake_model(model: nn.Module, mode) -> nn.Module:
    """A copy of `model` whose parameters and buffers are fake tensors of the same dtype and device."""
    with torch.no_grad():
        memo = {id(p): nn.Parameter(mode.from_tensor(p), requires_grad=p.requires_grad) for p in model.parameters()}
        memo.update({id(b): mode.from_tensor(b) for b in model.buffers()})
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Silence a logger for a block: fake tensors log every meta-kernel failure, which we handle."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _forward_and_loss(workload: Workload, x: torch.Tensor, y: torch.Tensor, model: nn.Module):
    """(output, loss or the exception the loss raised): the output's shape is judged before the loss."""
    out = model(x)
    if not torch.is_tensor(out):
        return out, None
    try:
        return out, workload.loss_fn(out, y)
    except Exception as e:  # reported after the shape check, which usually explains it better
        return out, e


def _dry_run(workload: Workload, x: torch.Tensor, y: torch.Tensor, fake: bool):
    """One forward and loss in eval mode without gradients: on fake tensors, or for real."""
    if not fake:
        model = workload.model
        was_training = model.training
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                return _forward_and_loss(workload, x, y, model.eval())
        finally:
            model.train(was_training)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _fake_model(workload.model, mode).eval()
    with _quiet("torch._subclasses.fake_tensor"), mode, torch.no_grad():
        out, loss = _forward_and_loss(workload, mode.from_tensor(x), mode.from_tensor(y), model)
    if isinstance(loss, Exception):
        raise loss  # maybe fake-only (a data-dependent loss): the real run decides
    return out, loss


def check_model_output(workload: Workload, micro_batch_size: int) -> None:
    """Refuse (ConfigError naming the expected shape) a model whose output does not fit the task."""
    check_targets(workload)
    batch = min(micro_batch_size, len(workload.train))
    x, y = workload.train.batch(torch.arange(batch))
    param = next(workload.model.parameters(), None)
    if param is not None:
        x, y = x.to(param.device), y.to(param.device)
    expected, least_last, rule = expected_shape(workload, batch)
    where = (
        f"workload {workload.name!r} (task {workload.task!r}): on a micro-batch of inputs {tuple(x.shape)} "
        f"{str(x.dtype).removeprefix('torch.')}"
    )
    try:
        out, loss = _dry_run(workload, x, y, fake=True)
    except Exception:  # fake tensors cannot run this model (data-dependent code): run it for real
        try:
            out, loss = _dry_run(workload, x, y, fake=False)
        except Exception as e:
            raise ConfigError(f"{where}, the model's forward failed: {_first_line(e)}") from None
    if not torch.is_tensor(out):
        raise ConfigError(
            f"{where}, the model returned {type(out).__name__}; expected one logits tensor of shape {rule}"
        )
    shape = tuple(out.shape)
    if not _shape_ok(shape, expected, least_last):
        want = "(" + ", ".join("V" if e is None else str(e) for e in expected) + ")"
        raise ConfigError(f"{where}, the model's output has shape {shape}; expected {want}: {rule}")
    if isinstance(loss, Exception):
        raise ConfigError(
            f"{where}, the loss failed on outputs {shape} and targets {tuple(y.shape)}: {_first_line(loss)}"
        )
    if not torch.is_tensor(loss) or loss.numel() != 1:
        got = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise ConfigError(f"{where}, the loss is {got}; expected a scalar tensor")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
