"""Test-only worker for tests/train/test_artifact_matrix.py: trains every cell of one strategy.

    python -m tests.train.artifact_worker OUT STRATEGY              (single)
    python -m torch.distributed.run --nproc-per-node 2 ... -m tests.train.artifact_worker OUT STRATEGY

For each cell (model x memory.ac x precision.policy) it trains a tiny run into OUT/STRATEGY/CELL/run
and writes rank 0's in-process predictions on the test split (the trained model as `train()`
returned it: wrapped, sharded, FP8-converted, in the run's compute precision, as the bench
evaluates it) to OUT/STRATEGY/CELL/in_process.parquet. One process (group) trains all cells, so
the matrix pays for interpreter and process-group start-up once per strategy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ACS = ("none", "full", "selective", "every-n")
POLICIES = ("fp32", "bf16-mixed", "fp8-tensorwise")

COMMON = [
    "train.steps=3",
    "train.warmup_steps=1",
    "train.lr=0.05",
    "train.micro_batch_size=16",
    "train.global_batch_size=32",
    "train.eval_batches=1",
    "train.checkpoint_every=0",
    "train.log_every=1",
    "train.threads=1",
    "log.progress=false",
    "log.mlflow=false",
]
# Linear widths are multiples of 16 so that FP8 converts the hidden layers (not the head, not the
# tabular input layer: its width is the number of encoded features).
MODELS = {
    "tabular": ["workload.name=tabular", "model.d_model=32", "model.n_layers=2", "model.dropout=0.0"],
    "sequence": ["workload.name=entry", "workload.entry=tests.artifact_models:sequence_workload"],
}


def cells() -> list[tuple[str, str, str]]:
    """(model, ac, policy) of every cell of one strategy: the built-in tabular MLP in all 12,
    the user's GRU model (workload.name=entry) where activation checkpointing wraps its blocks."""
    return [(m, ac, p) for ac in ACS for p in POLICIES for m in MODELS if m == "tabular" or ac != "none"]


def cell_name(model: str, ac: str, policy: str) -> str:
    return f"{model}-{ac}-{policy}"


def overrides(model: str, ac: str, policy: str, strategy: str) -> list[str]:
    return [*MODELS[model], *COMMON, f"memory.ac={ac}", f"precision.policy={policy}", f"parallel.strategy={strategy}"]


def in_process_predictions(result, batch_size: int):
    """The trained model's test-split predictions in the run's compute precision (as the bench does)."""
    from trainwise.evaluate.predict import predict_split
    from trainwise.train.precision import autocast_context

    model, wl = result.model, result.workload
    device = next(model.parameters()).device
    with autocast_context(result.policy, device):
        return predict_split(model, wl.test, wl.task, wl.info.get("classes"), batch_size)


def main(argv: list[str]) -> int:
    from trainwise.config import load_config
    from trainwise.train import loop

    out, strategy = Path(argv[0]), argv[1]
    # train() ends by destroying the process group; the sharded (FSDP2) or replicated (DDP) model
    # it returns needs the group for its forward, so the group is kept until every cell is done.
    loop.teardown_distributed = lambda ctx: None
    for model, ac, policy in cells():
        cell = out / strategy / cell_name(model, ac, policy)
        cfg = load_config(None, overrides(model, ac, policy, strategy))
        result = loop.train(cfg, cell / "run")
        frame = in_process_predictions(result, cfg.eval.batch_size)  # every rank runs it: FSDP2 all-gathers
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            frame.to_parquet(cell / "in_process.parquet")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
