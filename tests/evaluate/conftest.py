import numpy as np
import pandas as pd
import pytest


def make_predictions(n: int, n_classes: int, seed: int = 0, signal: float = 1.5, labels=None, ties: bool = False) -> pd.DataFrame:
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
