"""Test-only loader for tests/train/test_artifact_matrix.py: a fresh process that reads the artifacts.

    python -m tests.train.artifact_loader CELL_DIR...

For each CELL_DIR/run it loads the saved model through `trainwise.rundir.load_model` (the one
loader every stage uses), rebuilds the test split from the run's config.toml, and writes:

- loaded.parquet: the artifact's predictions in fp32, as `trainwise evaluate` and `serve` compute them;
- replayed.parquet (low-precision runs only): the artifact run the way training ran it, FP8 layers
  converted again (torchao, emulated on CPU) and the forward under the run's autocast;
- untrained.parquet: an untrained model of the same spec, the "wrong model" that shows the
  tolerance of the comparison can fail;
- loaded.json: the layers the replay converted to FP8.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def _test_split(cfg, cache: dict):
    from trainwise.config import config_to_dict
    from trainwise.workloads.base import get_workload_fn

    d = config_to_dict(cfg)
    key = json.dumps({k: d[k] for k in ("workload", "data", "model")}, sort_keys=True)
    if key not in cache:
        torch.manual_seed(cfg.train.seed)
        cache[key] = get_workload_fn(cfg.workload.name)(cfg).test
    return cache[key]


def check_cell(cell: Path, cache: dict) -> None:
    from trainwise.config import load_config
    from trainwise.evaluate.predict import predict_split
    from trainwise.rundir import load_model
    from trainwise.train.precision import POLICIES, apply_fp8, autocast_context
    from trainwise.workloads.base import build_model_from_spec

    run = cell / "run"
    cfg = load_config(run / "config.toml")
    split = _test_split(cfg, cache)
    model, meta = load_model(run)
    classes = meta["info"].get("classes")
    predict_split(model, split, meta["task"], classes, cfg.eval.batch_size).to_parquet(cell / "loaded.parquet")

    torch.manual_seed(12345)
    untrained = build_model_from_spec(meta["spec"])
    predict_split(untrained, split, meta["task"], classes, cfg.eval.batch_size).to_parquet(cell / "untrained.parquet")

    policy = POLICIES[cfg.precision.policy]
    fp8_layers = apply_fp8(model, policy.fp8_recipe, keep_patterns=cfg.precision.keep_high_precision, emulate=True)
    if policy.autocast_dtype is not None or fp8_layers:
        with autocast_context(policy, torch.device("cpu")):
            predict_split(model, split, meta["task"], classes, cfg.eval.batch_size).to_parquet(
                cell / "replayed.parquet"
            )
    (cell / "loaded.json").write_text(json.dumps({"replay_fp8_layers": fp8_layers}))


def main(cells: list[str]) -> int:
    torch.set_num_threads(1)  # as the runs trained and predicted in process (train.threads = 1)
    cache: dict = {}
    for cell in cells:
        check_cell(Path(cell), cache)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
