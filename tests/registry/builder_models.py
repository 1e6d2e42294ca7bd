"""Test-only entry point whose model builder lives outside its own package (`torch.nn:Linear`)."""

from __future__ import annotations

from torch import nn

from tests.helpers import _blobs
from trainwise.workloads.base import Workload


def linear_workload(cfg) -> Workload:
    kwargs = {"in_features": 16, "out_features": 2}
    return Workload(
        name="linear",
        task="classification",
        model=nn.Linear(**kwargs),
        train=_blobs(256, 0),
        val=_blobs(64, 1),
        test=_blobs(64, 2),
        spec={"builder": "torch.nn:Linear", "kwargs": kwargs},
        info={"classes": ["0", "1"]},
    )
