"""Synthetic mixed-type tables for the monitor benchmarks: 10 numeric and 10 categorical columns.

The columns cover the shapes that trip drift tests: heavy ties (integers, counts), skew
(lognormal, exponential), bounded (uniform, beta), bimodal, heavy tails (Student t), missing
values, and categorical columns from 2 to 100 categories with Zipf-like shares. `drift=True`
moves two numeric columns by 0.5 SD and reshuffles one categorical column's shares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CARDINALITIES = [2, 3, 4, 5, 8, 12, 20, 30, 50, 100]


def _zipf_shares(k: int, a: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** a
    return w / w.sum()


def make_mixed(
    n_rows: int, seed: int, drift: bool = False, n_numeric: int = 10, n_categorical: int = 10, as_category: bool = False
) -> pd.DataFrame:
    """`as_category`: categorical columns as pandas category dtype (as Parquet dictionary columns read), faster
    to build."""
    rng = np.random.default_rng(seed)
    numeric = {
        "num_normal": lambda: rng.normal(50.0, 10.0, n_rows),
        "num_lognormal": lambda: rng.lognormal(3.0, 0.8, n_rows),
        "num_uniform": lambda: rng.uniform(0.0, 1.0, n_rows),
        "num_age": lambda: rng.integers(18, 90, n_rows).astype(np.float64),
        "num_exponential": lambda: rng.exponential(2.0, n_rows),
        "num_bimodal": lambda: np.where(
            rng.random(n_rows) < 0.3, rng.normal(-2, 0.5, n_rows), rng.normal(2, 1.0, n_rows)
        ),
        "num_student_t": lambda: rng.standard_t(3, n_rows),
        "num_counts": lambda: rng.poisson(3.0, n_rows).astype(np.float64),
        "num_beta": lambda: rng.beta(2.0, 5.0, n_rows),
        "num_missing": lambda: np.where(rng.random(n_rows) < 0.05, np.nan, rng.normal(0.0, 1.0, n_rows)),
    }
    data = {}
    for name in list(numeric)[:n_numeric]:
        data[name] = numeric[name]()
    for k in CARDINALITIES[:n_categorical]:
        shares = _zipf_shares(k)
        labels = np.array([f"c{k}_{i}" for i in range(k)])
        codes = rng.choice(k, n_rows, p=shares)
        data[f"cat_{k}"] = pd.Categorical.from_codes(codes, labels) if as_category else labels[codes]
    frame = pd.DataFrame(data)
    if drift:
        for name in ("num_normal", "num_lognormal"):
            if name in frame:
                frame[name] = frame[name] + 0.5 * frame[name].std()
        if "cat_5" in frame:
            k = 5
            shares = _zipf_shares(k)[::-1]  # the rarest category becomes the most common
            codes = rng.choice(k, n_rows, p=shares)
            labels = np.array([f"c{k}_{i}" for i in range(k)])
            frame["cat_5"] = pd.Categorical.from_codes(codes, labels) if as_category else labels[codes]
    return frame
