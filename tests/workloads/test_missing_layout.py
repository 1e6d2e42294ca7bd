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
    cfg = load_config(None, ["workload.name=file", f"workload.path={tmp_path / 'customers.csv'}", "workload.target=churned"])
    w = get_workload_fn("file")(cfg)
    prep = w.info["preprocessing"]
    assert table_width(prep) == len(feature_names(prep)) == w.train.inputs.shape[1]
    assert example_input(w.input, 4).shape == (4, table_width(prep))
    x = w.train.inputs
    assert x[:, feature_names(prep).index("monthly_charges=<missing>")].sum() > 0
    np.testing.assert_array_equal(apply_preprocessing(prep, raw_columns(prep, x)), x.numpy())  # the inverse keeps missing cells missing
