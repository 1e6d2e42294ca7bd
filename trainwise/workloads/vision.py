"""`vision`: a small CNN on scikit-learn's bundled handwritten digits (1,797 images of 8x8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_digits
from torch import nn

from trainwise.workloads.base import Split, Workload, register_model, register_workload
from trainwise.workloads.inputs import tensor_input
from trainwise.workloads.tabular import split_rows


class ConvBlock(nn.Module):
    """Conv3x3 -> BatchNorm-free GroupNorm -> GELU, with a residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(1, c_out)  # GroupNorm: no running statistics, so AC recomputation is exact
        self.residual = c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.gelu(self.norm(self.conv(x)))
        return x + y if self.residual else y


class DigitsCNN(nn.Module):
    def __init__(self, channels: int, n_layers: int, n_classes: int = 10):
        super().__init__()
        blocks = [ConvBlock(1, channels)] + [ConvBlock(channels, channels) for _ in range(n_layers - 1)]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) -> (B, n_classes)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


@register_model("digits_cnn")
def build_digits_cnn(channels: int, n_layers: int, n_classes: int = 10) -> DigitsCNN:
    return DigitsCNN(channels, n_layers, n_classes)


@register_workload("vision")
def vision_workload(cfg) -> Workload:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    rows = split_rows(len(images), cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.split_seed)
    splits = {
        k: Split(
            inputs=torch.from_numpy(images[idx]),
            targets=torch.from_numpy(digits.target[idx]).long(),
            ids=idx.astype(np.int64),
            meta=pd.DataFrame({"digit": digits.target[idx].astype(str)}),
        )
        for k, idx in rows.items()
    }
    kwargs = dict(channels=cfg.model.d_model, n_layers=cfg.model.n_layers, n_classes=10)
    return Workload(
        name="vision",
        task="classification",
        model=build_digits_cnn(**kwargs),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        spec={"builder": "digits_cnn", "kwargs": kwargs},
        info={"classes": [str(i) for i in range(10)], "input_shape": [1, 8, 8], "slice_columns": ["digit"]},
        block_classes=(ConvBlock,),
        input=tensor_input((1, 8, 8), "float32", value_range=(0.0, 1.0)),
    )
