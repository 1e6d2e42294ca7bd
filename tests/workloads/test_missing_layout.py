"""The missing-indicator features (door) in the table layout that inputs, robustness and export share."""

from __future__ import annotations

import numpy as np

from tests.tables import write_churn_csv
from trainwise.config import load_config
from trainwise.evaluate.robustness import raw_columns
from trainwise.serve.export import example_input
from trainwise.workloads.base import get_workload_fn
from trainwise.workloads.inputs import table_width
from trainwise.workloads.tabular import apply_preprocessing, feature_names


def test_layout_with_missing_indicators(tmp_path):
    write_churn_csv(tmp_path / "customers.csv", n_missing=30)
    cfg = load_config(
        None, ["workload.name=file", f"workload.path={tmp_path / 'customers.csv'}", "workload.target=churned"]
    )
    w = get_workload_fn("file")(cfg)
    prep = w.info["preprocessing"]
    assert table_width(prep) == len(feature_names(prep)) == w.train.inputs.shape[1]
    assert example_input(w.input, 4).shape == (4, table_width(prep))
    x = w.train.inputs
    assert x[:, feature_names(prep).index("monthly_charges=<missing>")].sum() > 0
    np.testing.assert_array_equal(
        apply_preprocessing(prep, raw_columns(prep, x)), x.numpy()
    )  # the inverse keeps missing cells missing


def test_reference_of_a_table_with_missing_numbers(tmp_path):
    """The monitor's training reference: raw rows (nulls where the file had '?'), and the recovered
    layout from features keeps categorical blocks aligned past the indicator columns."""
    import pandas as pd

    from trainwise.monitor.reference import REFERENCE_FILE, raw_table
    from trainwise.train.loop import train

    frame = write_churn_csv(tmp_path / "customers.csv", n_missing=60)
    frame.loc[[3, 8], "monthly_charges"] = "see notes"
    frame.to_csv(tmp_path / "customers.csv", index=False)
    cfg = load_config(
        None,
        [
            "workload.name=file",
            f"workload.path={tmp_path / 'customers.csv'}",
            "workload.target=churned",
            "workload.column_types=monthly_charges:numeric",
            "model.d_model=8",
            "train.steps=2",
            "train.threads=1",
            "log.progress=false",
            "log.mlflow=false",
        ],
    )
    result = train(cfg, tmp_path / "run")
    ref = pd.read_parquet(tmp_path / "run" / "model" / REFERENCE_FILE)
    w = result.workload
    ids = np.concatenate([w.val.ids, w.test.ids])
    raw = pd.to_numeric(frame["monthly_charges"], errors="coerce").iloc[ids].reset_index(drop=True)
    assert ref["in_monthly_charges"].isna().tolist() == raw.isna().tolist() and raw.isna().any()
    recovered = raw_table(w.input, torch_cat(w.val.inputs, w.test.inputs))
    assert recovered["in_contract"] == frame["contract"].iloc[ids].tolist()
    assert [v is None for v in recovered["in_monthly_charges"]] == raw.isna().tolist()


def torch_cat(*tensors):
    import torch

    return torch.cat(tensors).double().numpy()
