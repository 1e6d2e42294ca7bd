"""A table the repository does not ship: customers of a subscription service, some of whom churned.

Numeric columns (tenure, monthly charges, support calls), categorical ones (contract, payment), a
yes/no target drawn from a logistic model of the features, and monthly charges missing in a few
rows, written as `?` the way many public CSVs (the UCI repository's) mark them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def churn_table(n_rows: int = 600, seed: int = 0, n_missing: int = 7, marker: str = "?") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n_rows)
    charges = np.round(rng.normal(70.0, 20.0, n_rows), 2)
    contract = rng.choice(["month-to-month", "one year", "two year"], n_rows, p=[0.5, 0.3, 0.2])
    payment = rng.choice(["card", "bank transfer", "check"], n_rows)
    calls = rng.poisson(2.0, n_rows)
    logit = (
        -1.0
        + 0.03 * (charges - 70)
        - 0.04 * (tenure - 36)
        + 0.4 * (calls - 2)
        + np.where(contract == "month-to-month", 1.0, -0.5)
    )
    churned = np.where(rng.random(n_rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": charges.astype(object),
            "contract": contract,
            "payment": payment,
            "support_calls": calls,
            "churned": churned,
        }
    )
    frame.loc[rng.choice(n_rows, n_missing, replace=False), "monthly_charges"] = marker
    return frame


def write_churn_csv(path, **kwargs) -> pd.DataFrame:
    """Write `churn_table(**kwargs)` as CSV at `path` (folders created); returns the frame."""
    from pathlib import Path

    frame = churn_table(**kwargs)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame
