"""Small models and configs shared by the memory tests (AC, measurement, estimator)."""

from __future__ import annotations

import torch
from torch import nn

from trainwise.config import load_config
from trainwise.workloads.lm import GPT

# lm-tiny shrunk so that a traced step takes well under a second
TINY = [
    "model.n_layers=3",
    "model.d_model=32",
    "model.n_heads=2",
    "model.context=16",
    "data.max_corpus_bytes=60000",
    "train.micro_batch_size=8",
    "train.global_batch_size=8",
    "log.progress=false",
]


def tiny_cfg(*extra: str):
    return load_config("configs/lm-tiny.toml", TINY + list(extra))


def tiny_gpt(n_layers: int = 3, d_model: int = 32, context: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(n_layers=n_layers, n_heads=2, d_model=d_model, context=context)


def lm_batch(batch: int = 4, context: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, context), generator=g), torch.randint(0, 256, (batch, context), generator=g)


class Plain(nn.Module):
    """A model with no block classes a workload would name: AC must say what it looked for."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))

    def forward(self, x):
        return self.net(x)
