"""A user's own sequence model, importable as a workload entry point (`tests.user_models:...`).

A GRU over (N, T, C) inputs with its own block class, the kind of model a new user brings: nothing
in it is trainwise's. `sequence_workload` declares its input (`tensor_input((T, C))`);
`undeclared_sequence_workload` is the same model without the declaration (and without the
shifted split: a noisier sensor's data).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainwise.workloads.base import Split, Workload
from trainwise.workloads.inputs import tensor_input

STEPS, CHANNELS, CLASSES = 10, 3, ("flat", "rising", "falling")


class GRUBlock(nn.Module):
    """GRU -> residual -> LayerNorm: the unit of activation checkpointing."""

    def __init__(self, width: int):
        super().__init__()
        self.gru = nn.GRU(width, width, batch_first=True)
        self.norm = nn.LayerNorm(width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (N, T, W) -> (N, T, W)
        out, _ = self.gru(h)
        return self.norm(h + out)


class SequenceNet(nn.Module):
    def __init__(self, n_channels: int = CHANNELS, width: int = 16, n_layers: int = 1, n_classes: int = len(CLASSES)):
        super().__init__()
        self.proj = nn.Linear(n_channels, width)
        self.blocks = nn.ModuleList(GRUBlock(width) for _ in range(n_layers))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, C) -> (N, n_classes)
        h = self.proj(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h[:, -1])


def trend_split(n: int, seed: int, noise_sd: float = 0.3) -> Split:
    """Noisy series whose first channel is flat, rising or falling (the class)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    slope = torch.tensor([0.0, 1.0, -1.0])[y]  # (N,)
    t = torch.linspace(-1, 1, STEPS)
    x = noise_sd * torch.randn(n, STEPS, CHANNELS, generator=g)  # (N, T, C)
    x[:, :, 0] += slope[:, None] * t[None, :]
    return Split(inputs=x, targets=y, ids=np.arange(n) + 100_000 * seed)


def _workload(cfg, declare: bool) -> Workload:
    kwargs = {"width": cfg.model.d_model, "n_layers": cfg.model.n_layers}
    return Workload(
        name="sequences",
        task="classification",
        model=SequenceNet(**kwargs),
        train=trend_split(512, 1),
        val=trend_split(128, 2),
        test=trend_split(256, 3),
        spec={"builder": "tests.user_models:SequenceNet", "kwargs": kwargs},
        info={"classes": list(CLASSES)},
        block_classes=(GRUBlock,),
        input=tensor_input((STEPS, CHANNELS), "float32") if declare else None,
        shifted=trend_split(256, 4, noise_sd=0.8) if declare else None,  # a noisier sensor
    )


def sequence_workload(cfg) -> Workload:
    return _workload(cfg, declare=True)


def undeclared_sequence_workload(cfg) -> Workload:
    return _workload(cfg, declare=False)
