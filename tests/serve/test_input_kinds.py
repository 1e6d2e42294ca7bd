"""Request schemas and export examples built from each kind of input spec (tensor dtypes, token ids)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainwise.serve.export import example_input
from trainwise.serve.runtime import Runtime
from trainwise.serve.schemas import request_model
from trainwise.workloads.inputs import table_input, tensor_input, tokens_input


def _messages(req, instances) -> list[str]:
    with pytest.raises(ValidationError) as e:
        req.model_validate({"instances": instances})
    return [err["msg"] for err in e.value.errors()]


@pytest.mark.parametrize(
    "dtype, bad, message",
    [
        ("int64", 1.5, "x[1][0] = 1.5: expected a JSON integer (dtype int64)"),
        ("int64", True, "x[1][0] = True: expected a JSON integer (dtype int64)"),
        ("float32", None, "x[1][0] = None: expected a JSON number (dtype float32)"),
        ("float32", [1.0], "x[1][0] = [1.0]: expected a JSON number (dtype float32)"),
        ("uint8", 300, "x[1][0] = 300: outside the range of uint8 [0, 255]"),
        ("bool", 1, "x[1][0] = 1: expected true or false (dtype bool)"),
    ],
)
def test_elements_follow_the_dtype(dtype, bad, message):
    req = request_model({"input": tensor_input((2, 2), dtype)}, 4)
    good = [[1, 0], [0, 1]] if dtype != "bool" else [[True, False], [False, True]]
    assert req.model_validate({"instances": [{"x": good}]}).instances[0].x == good
    assert _messages(req, [{"x": [good[0], [bad, good[1][1]]]}]) == [message]


def test_shape_errors_name_the_dimension_and_the_place():
    req = request_model({"input": tensor_input((4, 3))}, 4)
    row = [0.0, 0.0, 0.0]
    assert _messages(req, [{"x": [row, row, row + [0.0, 0.0], row]}]) == [
        "dimension 2 has 5 entries at x[2], expected 3 (shape [4, 3]; dimension 0 is the batch)"
    ]
    assert _messages(req, [{"x": [row] * 5}]) == [
        "dimension 1 has 5 entries, expected 4 (shape [4, 3]; dimension 0 is the batch)"
    ]
    assert _messages(req, [{"x": [row, 0.5, row, row]}]) == [
        "x[1] is a float, expected a list of 3 entries (dimension 2; shape [4, 3]; dimension 0 is the batch)"
    ]
    assert _messages(req, [{"x": [row] * 4, "y": 1}])[0] == "Extra inputs are not permitted"


def test_value_range_is_enforced_and_documented():
    spec = tensor_input((2,), "float32", value_range=(0.0, 1.0))
    req = request_model({"input": spec}, 4)
    assert _messages(req, [{"x": [0.5, 7.0]}]) == ["x[1] = 7.0: outside value_range [0, 1]"]
    schema = req.model_json_schema()["$defs"]["TensorInstance"]["properties"]["x"]
    assert schema["items"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}
    assert "values in [0, 1] (enforced)" in schema["description"]


def test_non_finite_numbers_are_refused():
    req = request_model({"input": tensor_input((2,))}, 4)
    assert _messages(req, [{"x": [0.5, float("nan")]}]) == ["x[1] = nan: expected a finite number"]


class Bag(nn.Module):
    """A classifier over token ids of any length (mean of embeddings)."""

    def __init__(self, vocab: int = 50, n_classes: int = 3):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, 8), nn.Linear(8, n_classes)

    def forward(self, ids):  # (B, T) -> (B, n_classes)
        return self.head(self.emb(ids).mean(dim=1))


class NextToken(nn.Module):
    def __init__(self, vocab: int = 50):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, 8), nn.Linear(8, vocab)

    def forward(self, ids):  # (B, T) -> (B, T, vocab)
        return self.head(torch.cumsum(self.emb(ids), dim=1))


def test_token_ids_classifier_batches_mixed_lengths():
    torch.manual_seed(0)
    meta = {"task": "classification", "input": tokens_input(50, 6), "info": {"classes": ["a", "b", "c"]}}
    rt = Runtime(model=Bag().eval(), meta=meta, version="t/1")
    req = request_model(meta, 8)
    sent = [[1, 2, 3], [4, 5], [6, 7, 8], [49]]
    body = req.model_validate({"instances": [{"ids": ids} for ids in sent]})
    out = rt.predict([i.model_dump() for i in body.instances])
    with torch.inference_mode():
        for ids, pred in zip(sent, out, strict=True):
            ref = torch.softmax(rt.model(torch.tensor([ids])), -1)[0].numpy()
            np.testing.assert_allclose([pred["probabilities"][c] for c in "abc"], ref, rtol=1e-5)
    assert any("less than 50" in m for m in _messages(req, [{"ids": [50]}]))
    assert any("at most 6 items" in m for m in _messages(req, [{"ids": [1] * 7}]))
    assert any("valid integer" in m for m in _messages(req, [{"ids": [1.5]}]))


def test_token_ids_language_model_generates_ids():
    torch.manual_seed(0)
    meta = {"task": "lm", "input": tokens_input(50, 4)}
    rt = Runtime(model=NextToken().eval(), meta=meta, version="t/1")
    inst = (
        request_model(meta, 4)
        .model_validate({"instances": [{"ids": [3, 4, 5], "max_new_tokens": 3}]})
        .instances[0]
        .model_dump()
    )
    out = rt.predict([inst])[0]
    ids, greedy = [3, 4, 5], []
    with torch.inference_mode():
        np.testing.assert_allclose(
            out["probabilities"], torch.softmax(rt.model(torch.tensor([ids]))[0, -1], -1).numpy(), rtol=1e-5, atol=1e-7
        )
        for _ in range(3):
            greedy.append(int(rt.model(torch.tensor([ids[-4:]]))[0, -1].argmax()))
            ids.append(greedy[-1])
    assert out["continuation_ids"] == greedy and "continuation" not in out


def test_byte_level_classifier_takes_text_up_to_its_context():
    req = request_model({"task": "classification", "input": tokens_input(256, 8)}, 4)
    assert req.model_validate({"instances": [{"prompt": "naïve"}]}).instances[0].prompt == "naïve"
    assert _messages(req, [{"prompt": "ééééé"}]) == ["the text is 10 UTF-8 bytes; the model reads at most 8"]


@pytest.mark.parametrize(
    "spec, shape, dtype, bounds",
    [
        (tensor_input((3, 4), "float32", value_range=(2.0, 3.0)), (16, 3, 4), torch.float32, (2.0, 3.0)),
        (tensor_input((5,), "int64", value_range=(0, 9)), (16, 5), torch.int64, (0, 9)),
        (tensor_input((5,), "uint8"), (16, 5), torch.uint8, (0, 1)),
        (tokens_input(1000, 12), (16, 12), torch.int64, (0, 999)),
    ],
)
def test_export_examples_follow_the_spec(spec, shape, dtype, bounds):
    x = example_input(spec, 16)
    assert tuple(x.shape) == shape and x.dtype == dtype
    assert bounds[0] <= float(x.min()) and float(x.max()) <= bounds[1]
    assert torch.equal(x, example_input(spec, 16)) and not torch.equal(x, example_input(spec, 16, seed=1))


def test_export_example_of_a_table_is_its_feature_vector():
    prep = {
        "numeric": [{"name": "age", "mean": 30.0, "scale": 5.0}],
        "categorical": [{"name": "job", "categories": ["a", "b", "c"]}],
    }
    spec = table_input(
        [{"name": "age", "type": "numeric"}, {"name": "job", "type": "categorical", "categories": ["a", "b", "c"]}],
        prep,
    )
    x = example_input(spec, 32)
    assert x.shape == (32, 4) and x.dtype == torch.float32
    assert torch.equal(x[:, 1:].sum(dim=1), torch.ones(32))  # one category per row, one-hot
