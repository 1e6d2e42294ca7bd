"""A user-style model for tests, importable as `workload.entry = "tests.artifact_models:sequence_workload"`.

A small sequence classifier over (N, T, C) inputs with its own block class (GRU + Linear), the
kind of model a user brings: it is where activation checkpointing's wrapper once leaked into the
saved weight names. Linear widths are multiples of 16 so that FP8 converts them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainwise.workloads.base import Split, Workload
from trainwise.workloads.inputs import tensor_input


class GRUBlock(nn.Module):
    """Pre-norm residual block: x + proj(GRU(norm(x))); the unit of activation checkpointing."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.gru = nn.GRU(d_model, d_model, batch_first=True)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, d) -> (N, T, d)
        h, _ = self.gru(self.norm(x))
        return x + self.proj(h)


class SequenceClassifier(nn.Module):
    def __init__(self, n_channels: int = 16, d_model: int = 32, n_blocks: int = 2, n_classes: int = 2):
        super().__init__()
        self.embed = nn.Linear(n_channels, d_model)
        self.blocks = nn.ModuleList(GRUBlock(d_model) for _ in range(n_blocks))
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C) -> (N, n_classes)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(dim=1))


def _sequences(n: int, seed: int, t: int = 8, c: int = 16) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t, c, generator=g)
    y = (x[:, :, 0].sum(dim=1) > 0).long()  # does channel 0 drift up over the sequence?
    return Split(inputs=x, targets=y, ids=np.arange(n))


def sequence_workload(cfg) -> Workload:
    """Test-only entry point: SequenceClassifier on synthetic sequences."""
    kwargs = {"n_channels": 16, "d_model": 32, "n_blocks": 2, "n_classes": 2}
    return Workload(
        name="sequence",
        task="classification",
        model=SequenceClassifier(**kwargs),
        train=_sequences(256, 0),
        val=_sequences(64, 1),
        test=_sequences(128, 2),
        spec={"builder": "tests.artifact_models:SequenceClassifier", "kwargs": kwargs},
        info={"classes": ["0", "1"]},
        block_classes=(GRUBlock,),
        input=tensor_input((8, 16)),
    )


def misfit_spec_workload(cfg) -> Workload:
    """Test-only entry point whose spec rebuilds a narrower model than the one it trains."""
    workload = sequence_workload(cfg)
    workload.spec = {**workload.spec, "kwargs": {**workload.spec["kwargs"], "d_model": 16}}
    return workload


def no_builder_workload(cfg) -> Workload:
    """Test-only entry point that gives no model builder (trainwise then names the entry point itself)."""
    workload = sequence_workload(cfg)
    workload.spec = {}
    return workload
