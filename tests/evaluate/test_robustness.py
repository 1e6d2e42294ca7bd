"""Robustness perturbations per input kind: tables through their raw columns, and clear skips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from trainwise.evaluate.robustness import perturbations, raw_columns, robustness
from trainwise.workloads.base import Split
from trainwise.workloads.inputs import table_input, tensor_input, tokens_input
from trainwise.workloads.tabular import apply_preprocessing, fit_preprocessing, load_fair


@pytest.fixture(scope="module")
def fair():
    from trainwise.config import load_config
    from trainwise.workloads.base import get_workload_fn

    w = get_workload_fn("tabular")(load_config(None, ["workload.name=tabular"]))
    return w.test, w.input


def test_raw_columns_recover_the_rows(fair):
    split, spec = fair
    raw = raw_columns(spec["preprocessing"], split.inputs)
    rows = load_fair().iloc[split.ids].reset_index(drop=True)
    np.testing.assert_allclose(raw["age"], rows["age"], rtol=1e-5)
    assert (raw["occupation"] == rows["occupation"]).all()
    np.testing.assert_allclose(apply_preprocessing(spec["preprocessing"], raw), split.inputs.numpy(), atol=1e-5)


def test_table_noise_is_in_column_units_and_missing_values_are_imputed(fair):
    split, spec = fair
    prep = spec["preprocessing"]
    n_num = len(prep["numeric"])
    v = perturbations(split, spec)
    assert set(v) == {"gaussian_noise_0.5sd", "missing_values_0.1"}
    diff = (v["gaussian_noise_0.5sd"].inputs - split.inputs).double()
    # standardised features move by 0.5 of a training standard deviation; one-hot features not at all
    assert np.allclose(diff[:, :n_num].std(dim=0).numpy(), 0.5, atol=0.05) and diff[:, n_num:].abs().max() < 1e-6
    missing = v["missing_values_0.1"].inputs
    for i in range(n_num):  # the training mean standardises to 0
        changed = (missing[:, i] != split.inputs[:, i]).float().mean()
        assert 0.05 < changed < 0.15 and (missing[missing[:, i] != split.inputs[:, i], i].abs() < 1e-6).all()
    start = n_num
    for col in prep["categorical"]:  # no "<missing>" category was trained here: an unknown one, all zeros
        block = missing[:, start : start + len(col["categories"])]
        assert 0.05 < (block.sum(dim=1) == 0).float().mean() < 0.15
        start += len(col["categories"])


def test_a_trained_missing_category_is_used_for_missing_cells():
    frame = pd.DataFrame({"x": np.arange(200.0), "city": ["a", "b", "<missing>", "c"] * 50})
    prep = fit_preprocessing(frame, ["x"], ["city"])
    spec = table_input(
        [
            {"name": "x", "type": "numeric"},
            {"name": "city", "type": "categorical", "categories": ["<missing>", "a", "b", "c"]},
        ],
        prep,
    )
    x = torch.from_numpy(apply_preprocessing(prep, frame))
    missing = perturbations(Split(x, torch.zeros(200, dtype=torch.long)), spec)["missing_values_0.1"].inputs
    changed = (missing[:, 1:] != x[:, 1:]).any(dim=1)
    assert changed.any() and (missing[changed, 1] == 1).all()  # column 1 is city=<missing>


class Linear(nn.Module):
    def __init__(self, n: int = 4, refuse_zeros: bool = False):
        super().__init__()
        self.fc, self.refuse_zeros = nn.Linear(n, 2), refuse_zeros

    def forward(self, x):
        if self.refuse_zeros and (x == 0).any():
            raise ValueError("zeros are not allowed\nsecond line")
        return self.fc(x.float())


def _split(x):
    return Split(x, torch.arange(len(x)) % 2)


@pytest.mark.parametrize(
    "spec, x, why",
    [
        (None, torch.randn(8, 4), "the model declares no input"),
        (tensor_input((4,), "int64"), torch.randint(0, 3, (8, 4)), "the input is an integer tensor (int64)"),
        (tensor_input((4,)), torch.randn(8, 5), "the split's examples have shape [5] but the model declares [4]"),
        (tokens_input(10, 4), torch.randn(8, 4), "token corruption needs (N, T) integer ids"),
    ],
)
def test_no_fitting_perturbation_is_a_skip_with_the_reason(spec, x, why):
    model = Linear(x.shape[1])
    out = robustness(model, _split(x), "classification", ["a", "b"], spec, {"accuracy": 0.5})
    assert why in out["skipped"] and set(out) == {"skipped", "shifted_split"}


def test_a_model_failing_on_one_perturbation_is_reported_not_raised():
    torch.manual_seed(0)
    x = torch.randn(64, 4) + 5
    out = robustness(
        Linear(refuse_zeros=True),
        _split(x),
        "classification",
        ["a", "b"],
        tensor_input((4,)),
        {"accuracy": 0.5},
        shifted=_split(x + 1),
    )
    assert out["dropout_0.1"] == {"skipped": "the model failed on these inputs: ValueError: zeros are not allowed"}
    assert out["gaussian_noise_0.5sd"]["n"] == 64 and out["shifted_split"]["n"] == 64
