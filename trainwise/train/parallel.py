"""Process-group setup and the data-parallel techniques.

`trainwise train` runs as one process unless a launcher (torchrun, `trainwise launch`, SLURM or
Kubernetes operators that set the torchrun environment) has set WORLD_SIZE/RANK/LOCAL_RANK.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from trainwise.errors import ConfigError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.backend is not None


def setup_distributed(strategy: str, backend: str, device: torch.device) -> DistContext:
    """Read the torchrun environment; single-process when it is absent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if strategy == "single":
        if world_size > 1:
            raise ConfigError(f"parallel.strategy = 'single' but the launcher started {world_size} processes; set parallel.strategy = 'ddp' or 'fsdp2'")
        return DistContext()
    raise ConfigError(f"parallel.strategy = {strategy!r} is not available in this build yet; use 'single'")


def shard_fn(strategy: str, ctx: DistContext, device: torch.device, policy, cfg_parallel):
    """The callable prepare() applies last, or None for one process."""
    return None


def teardown_distributed(ctx: DistContext) -> None:
    if ctx.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
