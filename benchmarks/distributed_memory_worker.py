"""One rank of the per-rank memory measurement (run by distributed_cpu.py under torchrun).

Builds lm-tiny exactly as `trainwise train` does (prepare() with shard_fn), runs one optimizer step,
then sums the bytes of the storage this rank really holds: the local shards of parameters and
gradients (DTensor.to_local() under FSDP2, whole tensors under DDP) and of the AdamW state.
"""

import json
import os
import sys

import torch

from trainwise.config import load_config
from trainwise.train.parallel import setup_distributed, shard_fn, teardown_distributed
from trainwise.train.precision import get_policy
from trainwise.train.setup import prepare
from trainwise.train.step import make_optimizer
from trainwise.workloads.build import build_workload


def local_bytes(t: torch.Tensor) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def main(strategy: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    cfg = load_config("configs/lm-tiny.toml", [f"parallel.strategy={strategy}", "train.micro_batch_size=8"])
    device = torch.device("cpu")
    policy = get_policy(cfg.precision.policy, device)
    dist = setup_distributed(strategy, "gloo", device)
    torch.manual_seed(cfg.train.seed)
    workload = build_workload(cfg)
    model = prepare(
        workload.model,
        policy=policy,
        device=device,
        block_classes=workload.block_classes,
        shard=shard_fn(strategy, dist, device, policy, cfg.parallel, workload.block_classes),
    ).model
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95))
    x, y = workload.train.batch(torch.arange(dist.rank * 8, dist.rank * 8 + 8))
    workload.loss_fn(model(x), y).backward()
    grads = sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    opt.step()
    row = {
        "strategy": strategy,
        "rank": dist.rank,
        "world_size": dist.world_size,
        "parameter_bytes": sum(local_bytes(p) for p in model.parameters()),
        "gradient_bytes": grads,
        "optimizer_state_bytes": sum(
            local_bytes(v)
            for st in opt.state.values()
            for v in st.values()
            if isinstance(v, torch.Tensor) and v.dim() > 0
        ),
    }
    row["total_bytes"] = row["parameter_bytes"] + row["gradient_bytes"] + row["optimizer_state_bytes"]
    with open(os.path.join(out_dir, f"{strategy}_rank{dist.rank}.json"), "w") as f:
        json.dump(row, f)
    teardown_distributed(dist)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
