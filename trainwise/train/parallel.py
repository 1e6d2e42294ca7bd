"""Process-group setup and the data-parallel techniques (DDP, FSDP2).

`trainwise train` runs as one process unless a launcher (torchrun, `trainwise launch`, SLURM or
Kubernetes operators that set the torchrun environment) has set WORLD_SIZE/RANK/LOCAL_RANK.
NCCL on CUDA, gloo on CPU. `apply_ddp` / `apply_fsdp2` are called only through `shard_fn`, which
`prepare()` applies last (after FP8, activation checkpointing and compile).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
from dataclasses import dataclass, field

import torch
import torch.distributed as tdist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from trainwise.errors import ConfigError, DeviceError
from trainwise.train.ac import CheckpointedBlock, find_blocks

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    strategy: str = "single"
    dtypes: dict = field(default_factory=dict)  # what shard_fn chose; written to env.json
    owns_group: bool = True  # False when the launcher joined the group (Ray Train): it closes it too

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.backend is not None

    def describe(self) -> dict:
        return {"strategy": self.strategy, "world_size": self.world_size, "backend": self.backend, **self.dtypes}


def free_port() -> int:
    """A TCP port nobody listens on now (bind to port 0 and let the OS choose)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and (device.type != "cuda" or not torch.cuda.is_available()):
        raise DeviceError(
            f"parallel.backend = 'nccl' needs CUDA GPUs, but this process runs on {device.type}; use parallel.backend "
            "= 'gloo' (or 'auto')"
        )
    return backend


def setup_distributed(strategy: str, backend: str, device: torch.device) -> DistContext:
    """Read the torchrun environment and join the process group; single-process when it is absent.

    `ddp`/`fsdp2` without a launcher run as a group of one (a fresh local port), so a config works
    unchanged on 1 or N processes.
    """
    joined = tdist.is_initialized()  # Ray Train joins the group before the training function runs
    world_size = tdist.get_world_size() if joined else int(os.environ.get("WORLD_SIZE", "1"))
    if strategy == "single":
        if world_size > 1:
            raise ConfigError(
                f"parallel.strategy = 'single' but the launcher started {world_size} processes; set parallel.strategy "
                "= 'ddp' or 'fsdp2'"
            )
        return DistContext()
    backend = pick_backend(backend, device)
    rank = tdist.get_rank() if joined else int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if joined:
        backend = tdist.get_backend()
    elif "MASTER_ADDR" in os.environ:
        tdist.init_process_group(backend)
    else:
        tdist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    return DistContext(rank, world_size, local_rank, backend, strategy, owns_group=not joined)


def local_device(ctx: DistContext, device: torch.device) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK under a launcher."""
    return torch.device("cuda", ctx.local_rank) if device.type == "cuda" and ctx.enabled else device


def broadcast_from_main(ctx: DistContext, obj):
    """Rank 0's `obj` on every rank (the run directory path must be one path for all ranks)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(ctx: DistContext, value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (each rank's loss is its slice's mean; slices are equal-sized)."""
    if not ctx.enabled:
        return value
    value = value.detach().clone()
    tdist.all_reduce(value)
    return value / ctx.world_size


def max_over_ranks(ctx: DistContext, value: int) -> int:
    """The largest of an integer over ranks (a decision every rank must take alike)."""
    if not ctx.enabled:
        return value
    box = torch.tensor([value], dtype=torch.int64, device="cuda" if ctx.backend == "nccl" else "cpu")
    tdist.all_reduce(box, op=tdist.ReduceOp.MAX)
    return int(box.item())


def apply_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap in DistributedDataParallel: full replicas, gradients all-reduced (averaged) in their own dtype."""
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def apply_fsdp2(
    model: nn.Module, mesh, param_dtype, reduce_dtype, reshard_after_forward: bool, blocks: list[nn.Module]
) -> nn.Module:
    """Shard each block with `fully_shard`, then the root (torchtitan's order), in place.

    Parameters, gradients and optimizer state live as 1/N shards (DTensors) per rank; each block's
    parameters are all-gathered in `param_dtype` just before it runs and freed after forward when
    `reshard_after_forward`; gradients are reduce-scattered in `reduce_dtype`.
    """
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    for block in blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    # the root holds the rest (embeddings, final norm, head); it is needed right after forward
    fully_shard(model, mesh=mesh, reshard_after_forward=False, mp_policy=mp)
    return model


def fsdp_dtypes(policy, param_dtype: str, reduce_dtype: str) -> tuple[torch.dtype | None, torch.dtype | None]:
    """DESIGN.md: param bf16 / reduce fp32 when compute is bf16 (mixed, fp8); fp32 stays fp32.
    None means 'the parameter's own dtype' (bf16-true gathers bf16)."""
    bf16_compute = policy.autocast_dtype == torch.bfloat16
    p = DTYPES[param_dtype] if param_dtype != "auto" else (torch.bfloat16 if bf16_compute else None)
    r = DTYPES[reduce_dtype] if reduce_dtype != "auto" else (torch.float32 if bf16_compute else None)
    return p, r


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def shard_fn(
    strategy: str,
    ctx: DistContext,
    device: torch.device,
    policy,
    cfg_parallel,
    block_classes: tuple[type, ...] = (),
    block_class_names=(),
):
    """The callable prepare() applies last, or None for one process."""
    if strategy == "single":
        return None
    if strategy == "ddp":
        ctx.dtypes = {
            "params_dtype": _name(policy.param_dtype),
            "gradient_reduce_dtype": _name(policy.param_dtype),
            "sharded": "nothing (full replicas)",
        }
        return lambda model: apply_ddp(model, device)
    param_dtype, reduce_dtype = fsdp_dtypes(policy, cfg_parallel.param_dtype, cfg_parallel.reduce_dtype)
    ctx.dtypes = {
        "params_dtype": _name(policy.param_dtype),
        "gather_dtype": _name(param_dtype or policy.param_dtype),
        "gradient_reduce_dtype": _name(reduce_dtype or param_dtype or policy.param_dtype),
        "reshard_after_forward": cfg_parallel.reshard_after_forward,
        "sharded": "parameters, gradients, optimizer state (dim 0, per block)",
    }

    def shard(model: nn.Module) -> nn.Module:
        mesh = init_device_mesh(device.type, (ctx.world_size,))
        blocks = [
            b for _, b in find_blocks(model, tuple(block_classes) + (CheckpointedBlock,), list(block_class_names))
        ]
        return apply_fsdp2(model, mesh, param_dtype, reduce_dtype, cfg_parallel.reshard_after_forward, blocks)

    return shard


@contextlib.contextmanager
def grad_sync(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of gradient accumulation
    (DDP's no_sync; FSDP2's set_requires_gradient_sync)."""
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(sync)
        yield
    elif sync or not hasattr(model, "no_sync"):
        yield
    else:
        with model.no_sync():
            yield


def elastic_restart(ctx: DistContext | None = None) -> bool:
    """True in a group that torchrun restarted after a failure (then the run resumes by itself).

    Each node's torchrun counts its own restarts: the node whose worker failed counts one, while
    another node that restarts only because the group's membership changed counts none. So, given
    the group's `ctx`, the answer is whether any rank was restarted (a collective: every rank calls it).
    """
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if ctx is None or ctx.world_size == 1:
        return restarted
    flag = torch.tensor([int(restarted)], device="cuda" if ctx.backend == "nccl" else "cpu")  # NCCL: GPU tensors
    tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
    return bool(flag.item())


def teardown_distributed(ctx: DistContext) -> None:
    """Leave the process group. The caller drops its DDP wrappers first: a Reducer that outlives the
    group, as its last holder, tears gloo down holding the GIL and can deadlock on a gloo thread
    that needs the GIL (seen as a rank hung at exit). gc.collect() frees them while the group exists.
    Every reference counts, down to a step's output (its replay closure holds the wrapper):
    tests/train/test_distributed.py::test_no_ddp_wrapper_outlives_the_process_group checks train()."""
    gc.collect()
    if ctx.enabled and ctx.owns_group and tdist.is_initialized():
        tdist.destroy_process_group()
