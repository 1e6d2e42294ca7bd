"""Test-only entry-point workload whose speed depends on the precision policy: a small classifier
whose forward sleeps FP16_S under fp16 autocast (a stand-in for a CPU without fp16 units, where
fp16-mixed runs 30x slower) and BASE_S otherwise, so that fp32 and bf16-mixed are a near-tie.

Used as `workload.name = "entry"`, `workload.entry = "tests.bench.slow_workload:make"`; nothing
outside tests/ reads it.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from trainwise.workloads.base import Split, Workload

BASE_S = 0.04  # long enough that a loaded scheduler's few ms of wake-up latency stay a small share
FP16_S = 1.0


class SlowUnderFp16(nn.Module):
    def __init__(self, n_features: int = 16, n_classes: int = 2, hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x):
        device = x.device.type
        fp16 = torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.float16
        time.sleep(FP16_S if fp16 else BASE_S)
        return self.fc2(torch.relu(self.fc1(x)))


def _blobs(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = (
        (x[:, 0] + 0.5 * x[:, 1] + 0.8 * torch.randn(n, generator=g)) > 0
    ).long()  # noisy labels: the loss stays well above 0
    return Split(inputs=x, targets=y, ids=np.arange(n))


def make(cfg) -> Workload:
    return Workload(
        name="slow-under-fp16",
        task="classification",
        model=SlowUnderFp16(),
        train=_blobs(1024, 0),
        val=_blobs(256, 1),
        test=_blobs(256, 2),
        spec={"builder": "tests.bench.slow_workload:SlowUnderFp16", "kwargs": {}},
        info={"classes": ["0", "1"]},
    )
