import numpy as np
import pandas as pd
import pytest

from tests.realruns import copy_run


def make_predictions(
    n: int, n_classes: int, seed: int = 0, signal: float = 1.5, labels=None, ties: bool = False
) -> pd.DataFrame:
    """A classification predictions frame with softmax probabilities and one slice column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n) if labels is None else labels
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    if ties:
        p = np.round(p, 1)
        p /= p.sum(axis=1, keepdims=True)
    classes = [f"c{i}" for i in range(n_classes)]
    df = pd.DataFrame({"id": np.arange(n), "label": np.array(classes)[y], "pred": np.array(classes)[p.argmax(1)]})
    for i, c in enumerate(classes):
        df[f"prob_{c}"] = p[:, i]
    df["region"] = np.array(["north", "south", "east", "tiny"])[np.minimum(rng.integers(0, 40, n) // 13, 3)]
    return df


@pytest.fixture
def preds():
    return make_predictions


LM = [
    "workload.name=lm",
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.context=16",
    "data.max_corpus_bytes=100000",
    "train.micro_batch_size=8",
    "train.global_batch_size=8",
    "train.warmup_steps=1",
    "train.eval_batches=1",
    "train.threads=1",
    "log.mlflow=false",
    "log.progress=false",
]


def train_lm(run_dir, steps=5):
    """A tiny byte-level LM run (context 16), trained by `trainwise.train` itself."""
    from trainwise.config import load_config
    from trainwise.train.loop import train

    return train(load_config(None, LM + [f"train.steps={steps}"]), run_dir).run_dir


@pytest.fixture(scope="session")
def tabular_runs(tiny_runs):
    """Two real tabular runs (seeds 0 and 1) of the same recipe: a baseline and a candidate."""
    return tiny_runs.trained("good"), tiny_runs.trained("good_seed1")


@pytest.fixture
def cli_main(monkeypatch):
    """trainwise.cli.main with only this component's verbs (the other components are built elsewhere)."""
    from trainwise import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["trainwise.evaluate.commands"])
    return cli.main


@pytest.fixture
def trained_runs(tiny_runs, tmp_path):
    """Never-evaluated copies of real runs (`compare` evaluates them, writing eval/ into them): the same
    recipe with seeds 0 and 1, and a sabotaged one (lr 0: the model never learns)."""
    keys = {"seed0": "good", "seed1": "good_seed1", "lr0": "never_learns"}
    return {name: copy_run(tiny_runs.trained(key), tmp_path / name, with_eval=False) for name, key in keys.items()}
