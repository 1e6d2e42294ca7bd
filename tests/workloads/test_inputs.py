"""The input spec: every built-in declares one, it reaches model.json, and a bad one names its field."""

from __future__ import annotations

import re

import pytest
import torch

from tests.helpers import tiny_lm_config
from trainwise.config import load_config
from trainwise.errors import ConfigError
from trainwise.rundir import read_json
from trainwise.workloads.base import Split, Workload, get_workload_fn
from trainwise.workloads.inputs import (
    input_spec_of,
    require_input_spec,
    table_input,
    tensor_input,
    tokens_input,
    validate_input_spec,
)


@pytest.mark.parametrize("name, kind", [("tabular", "table"), ("vision", "tensor")])
def test_builtins_declare_their_input(name, kind):
    cfg = load_config(None, [f"workload.name={name}"])
    w = get_workload_fn(name)(cfg)
    assert w.input["kind"] == kind
    if kind == "table":  # the columns a request must send are the raw ones, not the one-hot features
        assert [c["name"] for c in w.input["columns"]][:2] == ["rate_marriage", "age"]
        assert w.input["preprocessing"] == w.info["preprocessing"]
    else:
        assert w.input["shape"] == list(w.train.inputs.shape[1:])


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"kind": "image"}, "kind"),
        ({"kind": "tensor", "shape": [0, 3], "dtype": "float32"}, "shape"),
        ({"kind": "tensor", "shape": [3], "dtype": "complex64"}, "dtype"),
        ({"kind": "tokens", "vocab_size": 256}, "context"),
        ({"kind": "table", "columns": [{"name": "a", "type": "text"}], "preprocessing": {}}, "columns[0]"),
    ],
)
def test_a_bad_spec_names_its_field(spec, field):
    with pytest.raises(ConfigError, match=re.escape(f"Workload.input.{field}")):
        validate_input_spec(spec, "Workload.input")


def test_a_spec_the_data_contradicts_is_refused():
    split = Split(torch.randn(8, 3, 5), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"declares shape \[3, 4\] but the examples have shape \[3, 5\]"):
        Workload(
            name="mine",
            task="classification",
            model=torch.nn.Linear(5, 2),
            train=split,
            val=split,
            test=split,
            spec={},
            input=tensor_input((3, 4)),
        )
    ids = Split(torch.randint(0, 300, (8, 16)), torch.zeros(8, 16, dtype=torch.long))
    with pytest.raises(ConfigError, match="vocab_size 256 but the examples hold token id"):
        Workload(
            name="mine",
            task="lm",
            model=torch.nn.Linear(5, 2),
            train=ids,
            val=ids,
            test=ids,
            spec={},
            input=tokens_input(256, 16),
        )


def test_legacy_model_json_is_read_and_a_missing_spec_says_what_to_add():
    assert input_spec_of({"info": {"input_shape": [1, 8, 8]}})["shape"] == [1, 8, 8]
    assert input_spec_of(
        {"task": "lm", "spec": {"kwargs": {"context": 64}}, "info": {"vocab_size": 256}}
    ) == tokens_input(256, 64)
    table = table_input([{"name": "x", "type": "numeric"}], {"numeric": [], "categorical": []})
    assert input_spec_of({"info": {"input_schema": table["columns"], "preprocessing": table["preprocessing"]}}) == table
    with pytest.raises(ConfigError, match=r"serve needs to know the model's input.*tensor_input\(shape, dtype\)"):
        require_input_spec({"spec": {"builder": "mypkg:Net"}, "info": {}}, "serve")


def test_the_spec_reaches_model_json(tmp_path):
    from trainwise.train.loop import train

    result = train(tiny_lm_config("train.steps=2", "train.checkpoint_every=0"), tmp_path / "run")
    meta = read_json(result.run_dir / "model" / "model.json")
    assert meta["input"] == tokens_input(256, 32)


@pytest.mark.parametrize(
    "prep, message",
    [
        (
            {"numeric": [{"name": "x"}], "categorical": []},
            r"preprocessing.numeric\[0\] = \{'name': 'x'\}: expected a dict with name, mean, scale",
        ),
        (
            {"numeric": [{"name": "y", "mean": 0.0, "scale": 1.0}], "categorical": []},
            r"preprocessing.numeric\[0\]: column 'y' is not among the declared columns",
        ),
        ({"scaler": "StandardScaler()"}, r"Workload.input.preprocessing: expected the fitted preprocessing dict"),
    ],
)
def test_a_table_preprocessing_serving_cannot_apply_is_refused(prep, message):
    with pytest.raises(ConfigError, match=message):
        table_input([{"name": "x", "type": "numeric"}], prep)


def test_the_data_must_match_a_tensor_dtype_and_a_table_width():
    split = Split(torch.randint(0, 5, (8, 3)), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"declares dtype float32 but the examples are torch.int64"):
        Workload(
            name="mine",
            task="classification",
            model=torch.nn.Linear(3, 2),
            train=split,
            val=split,
            test=split,
            spec={},
            input=tensor_input((3,)),
        )
    table = table_input(
        [{"name": "x", "type": "numeric"}], {"numeric": [{"name": "x", "mean": 0.0, "scale": 1.0}], "categorical": []}
    )
    wide = Split(torch.randn(8, 3), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"preprocessing makes 1 features but the examples have shape \[8, 3\]"):
        Workload(
            name="mine",
            task="classification",
            model=torch.nn.Linear(3, 2),
            train=wide,
            val=wide,
            test=wide,
            spec={},
            input=table,
        )


def test_a_shifted_split_is_checked_like_the_others():
    split = Split(torch.randn(8, 3), torch.zeros(8, dtype=torch.long))
    common = dict(
        name="mine", task="classification", model=torch.nn.Linear(3, 2), train=split, val=split, test=split, spec={}
    )
    assert Workload(**common, input=tensor_input((3,)), shifted=split).shifted is split
    with pytest.raises(ConfigError, match="Workload.shifted is a tuple; expected a Split or None"):
        Workload(**common, shifted=(split.inputs, split.targets))
    with pytest.raises(
        ConfigError, match=r"Workload.shifted: Workload.input declares shape \[3\] but the examples have shape \[4\]"
    ):
        Workload(**common, input=tensor_input((3,)), shifted=Split(torch.randn(8, 4), torch.zeros(8, dtype=torch.long)))
