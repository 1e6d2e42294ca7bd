"""A model trained on a table with missing numbers serves rows with missing numbers the same way:
the imputation recorded in model.json (training median + indicator) is applied at serve time."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from tests.tables import write_churn_csv

ROW = {
    "tenure_months": 12,
    "monthly_charges": 80.5,
    "contract": "month-to-month",
    "payment": "card",
    "support_calls": 3,
}


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory):
    from trainwise.config import load_config
    from trainwise.train.loop import train

    root = tmp_path_factory.mktemp("churn")
    write_churn_csv(root / "customers.csv", n_missing=30)
    cfg = load_config(
        None,
        [
            "workload.name=file",
            f"workload.path={root / 'customers.csv'}",
            "workload.target=churned",
            "model.n_layers=1",
            "model.d_model=16",
            "train.steps=20",
            "train.micro_batch_size=64",
            "train.global_batch_size=64",
            "train.threads=1",
            "log.progress=false",
            "log.mlflow=false",
        ],
    )
    train(cfg, root / "run")
    return root / "run"


def test_a_null_number_is_served_as_in_training(churn_run, server, settings):
    from trainwise.rundir import load_model
    from trainwise.serve.runtime import load_runtime
    from trainwise.workloads.tabular import apply_preprocessing

    rows = [ROW, {**ROW, "monthly_charges": None}]
    with server(load_runtime(str(churn_run)), settings()) as (url, _):
        ok = httpx.post(f"{url}/v1/predict", json={"instances": rows})
        not_nullable = httpx.post(f"{url}/v1/predict", json={"instances": [{**ROW, "tenure_months": None}]})
    assert ok.status_code == 200, ok.text
    model, meta = load_model(churn_run)
    prep = meta["info"]["preprocessing"]
    x = apply_preprocessing(prep, pd.DataFrame(rows))
    fill = next(c for c in prep["numeric"] if c["name"] == "monthly_charges")
    # the null row is the training median row with its indicator set
    np.testing.assert_allclose(
        x[1],
        apply_preprocessing(prep, pd.DataFrame([{**ROW, "monthly_charges": fill["fill"]}]))[0]
        + np.eye(x.shape[1])[meta["info"]["features"].index("monthly_charges=<missing>")],
        rtol=1e-6,
    )
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(x)), -1).numpy()
    got = np.array([[p["probabilities"][c] for c in meta["info"]["classes"]] for p in ok.json()["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # a column that had no missing values in training still refuses null: the model never saw one there
    assert not_nullable.status_code == 422 and not_nullable.json()["detail"][0]["field"] == "instances[0].tenure_months"
