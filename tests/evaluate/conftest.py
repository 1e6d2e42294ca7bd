import numpy as np
import pandas as pd
import pytest


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


def make_run(run_dir, overrides, steps=40, seed=0, lr=3e-3):
    """A run directory as `trainwise train` writes it, from a few steps of a plain training loop."""
    import torch

    from trainwise.config import config_to_toml, load_config
    from trainwise.rundir import save_model, write_atomic
    from trainwise.workloads.base import get_workload_fn

    cfg = load_config(None, overrides)
    w = get_workload_fn(cfg.workload.name)(cfg)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(w.model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = w.train.batch(torch.randint(0, len(w.train), (64,), generator=g))
        loss = w.loss_fn(w.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_model(w.model, run_dir / "model", {"spec": w.spec, "task": w.task, "info": w.info, "workload": w.name})
    write_atomic(run_dir / "config.toml", config_to_toml(cfg))
    return run_dir


TABULAR = ["workload.name=tabular", "model.n_layers=1", "model.d_model=16"]
LM = [
    "workload.name=lm",
    "model.n_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.context=16",
    "data.max_corpus_bytes=100000",
]


@pytest.fixture(scope="session")
def tabular_runs(tmp_path_factory):
    """Two tabular runs (different seeds) of the same workload: a baseline and a candidate."""
    root = tmp_path_factory.mktemp("runs")
    return make_run(root / "a", TABULAR, seed=0), make_run(root / "b", TABULAR, seed=1)


@pytest.fixture
def cli_main(monkeypatch):
    """trainwise.cli.main with only this component's verbs (the other components are built elsewhere)."""
    from trainwise import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["trainwise.evaluate.commands"])
    return cli.main


TRAIN = [
    "workload.name=tabular",
    "model.n_layers=1",
    "model.d_model=16",
    "train.steps=60",
    "train.micro_batch_size=64",
    "train.global_batch_size=64",
    "train.lr=1e-2",
    "log.progress=false",
    "log.mlflow=false",
    "train.threads=1",
]


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """Run directories from `trainwise.train.loop.train` itself (about 2 s each): the same recipe
    with seeds 0 and 1, and a sabotaged one (lr 0: the model never learns)."""
    from trainwise.config import load_config
    from trainwise.train.loop import train

    root = tmp_path_factory.mktemp("trained")
    runs = {"seed0": ["train.seed=0"], "seed1": ["train.seed=1"], "lr0": ["train.seed=0", "train.lr=0"]}
    return {name: train(load_config(None, TRAIN + extra), root / name).run_dir for name, extra in runs.items()}
