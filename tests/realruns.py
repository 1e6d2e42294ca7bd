"""Real run directories for seam tests: trained by `trainwise.train`, evaluated by `trainwise
evaluate`, never written by hand. The session fixture `tiny_runs` (tests/conftest.py) hands them out."""

from __future__ import annotations

import shutil
from pathlib import Path

# The built-in tabular workload with a tiny MLP: one real run trains in about a second on one thread.
TINY_TABULAR = [
    "workload.name=tabular",
    "model.n_layers=1",
    "model.d_model=16",
    "train.steps=40",
    "train.micro_batch_size=64",
    "train.global_batch_size=64",
    "train.lr=1e-2",
    "train.threads=1",
    "log.mlflow=false",
    "log.progress=false",
]

# Versions the default gate tells apart on the 637 test examples (test accuracy): `good` ~0.71;
# `good_seed1` as good, another seed (the gate cannot show it within 0.005: inconclusive);
# `undertrained` (2 steps) and `never_learns` (lr 0) ~0.47-0.49, shown worse than `good`.
RECIPES = {
    "good": ["train.seed=0"],
    "good_seed1": ["train.seed=1"],
    "undertrained": ["train.seed=0", "train.steps=2"],
    "never_learns": ["train.seed=0", "train.lr=0"],
}


class TinyRuns:
    """Real run directories by RECIPES name, built once per session on first use.

    `trained(key)` is the folder `trainwise train` wrote (no eval/); `evaluated(key)` is a copy
    of it with the eval/ that `trainwise evaluate` writes (test split), which `register` logs and
    `promote`'s gate compares. Both are shared and read-only: a test that changes a run, or
    needs it in a folder of its own, copies it first (`copy_run`).
    """

    def __init__(self, root: Path):
        self.root = root

    def trained(self, key: str) -> Path:
        from trainwise.config import load_config
        from trainwise.train.loop import train

        run_dir = self.root / "trained" / key
        if not (run_dir / "summary.json").is_file():
            train(load_config(None, TINY_TABULAR + RECIPES[key]), run_dir)
        return run_dir

    def evaluated(self, key: str) -> Path:
        from trainwise.evaluate.evaluate import evaluate_run

        run_dir = self.root / "evaluated" / key
        if not (run_dir / "eval" / "metrics.json").is_file():
            copy_run(self.trained(key), run_dir)
            evaluate_run(run_dir)
        return run_dir


def copy_run(run_dir: Path, dest: Path, with_eval: bool = True) -> Path:
    """A private copy of a shared run directory (`with_eval=False`: without its eval/)."""
    shutil.copytree(run_dir, dest, dirs_exist_ok=True)
    if not with_eval and (dest / "eval").exists():
        shutil.rmtree(dest / "eval")
    return dest
