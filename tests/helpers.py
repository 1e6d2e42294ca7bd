"""Shared helpers for tests: tiny configs and test-only workloads (importable as entry points)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainwise.config import load_config
from trainwise.workloads.base import Split, Workload

TINY_LM = [
    "workload.name=lm",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.d_model=32",
    "model.context=32",
    "data.max_corpus_bytes=400000",
    "train.micro_batch_size=8",
    "train.global_batch_size=8",
    "train.steps=8",
    "train.warmup_steps=2",
    "train.eval_every=4",
    "train.eval_batches=2",
    "train.checkpoint_every=4",
    "train.log_every=1",
    "train.threads=1",
    "log.progress=false",
    "log.mlflow=false",
]


def tiny_lm_config(*extra: str):
    return load_config(None, TINY_LM + list(extra))


# a one-block lm for commands that only build or import (info, estimate): no training length set
ONE_BLOCK_LM = [
    "train.threads=1",
    "data.max_corpus_bytes=200000",
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.context=32",
    "train.micro_batch_size=4",
    "train.global_batch_size=4",
]


def set_args(*items: str) -> list[str]:
    """`--set ITEM` for each item, as a command line takes them."""
    return [a for item in items for a in ("--set", item)]


class Overflow(nn.Module):
    """A linear model whose activations are scaled far past fp16's maximum (65504)."""

    def __init__(self, n_features: int = 16, n_classes: int = 2, gain: float = 1e6):
        super().__init__()
        self.fc = nn.Linear(n_features, n_classes)
        self.gain = gain

    def forward(self, x):
        return self.fc(x * self.gain)


def _blobs(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = (x[:, 0] > 0).long()
    return Split(inputs=x, targets=y, ids=np.arange(n))


def overflow_workload(cfg) -> Workload:
    """Test-only entry point: a model built to overflow fp16."""
    return Workload(
        name="overflow",
        task="classification",
        model=Overflow(),
        train=_blobs(256, 0),
        val=_blobs(64, 1),
        test=_blobs(64, 2),
        spec={"builder": "tests.helpers:Overflow", "kwargs": {}},
        info={"classes": ["0", "1"]},
    )


def not_a_workload(cfg):
    """Test-only entry point that returns the wrong structure."""
    return {"model": None}
