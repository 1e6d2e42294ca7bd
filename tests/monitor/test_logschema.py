"""The one log schema: features against numpy, column roles, and rows the server's writer builds."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trainwise.monitor import logschema as ls
from trainwise.monitor.data import load_log_windows
from trainwise.serve.predlog import log_table
from trainwise.workloads.inputs import tensor_input, tokens_input

TABLE = {
    "kind": "table",
    "columns": [{"name": "age", "type": "numeric"}, {"name": "job", "type": "categorical", "categories": ["a"]}],
    "preprocessing": {"numeric": [], "categorical": []},
}


def test_tensor_features_match_numpy_and_handle_non_finite_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 12))
    x[0, :3] = 0.0
    x[1, 2], x[1, 5] = np.nan, np.inf
    x[2, :] = np.nan
    got = ls.tensor_features(x)
    finite = [row[np.isfinite(row)] for row in x]
    for i in (0, 1, 3, 4):
        assert got["in_mean"][i] == pytest.approx(finite[i].mean())
        assert got["in_std"][i] == pytest.approx(finite[i].std())
        assert got["in_min"][i] == finite[i].min() and got["in_max"][i] == finite[i].max()
    assert got["in_zero_share"][0] == 3 / 12 and got["in_nonfinite_share"][1] == 2 / 12
    assert (
        got["in_mean"][2] is None and got["in_nonfinite_share"][2] == 1.0
    )  # nothing finite: no statistics, all non-finite


def test_token_features():
    got = ls.token_features([[1, 1, 200, 3], []], vocab_size=256)
    assert got == {"in_length": [4.0, 0.0], "in_distinct_share": [0.75, None], "in_high_id_share": [0.25, None]}


def test_output_features_classes_and_next_byte():
    out = ls.output_features(
        [
            {"label": "yes", "probabilities": {"no": 0.2, "yes": 0.8}},
            {"label": "no", "probabilities": {"no": 0.6, "yes": 0.4}},
        ]
    )
    assert out == {"prediction": ["yes", "no"], "prob_no": [0.2, 0.6], "prob_yes": [0.8, 0.4]}
    lm = ls.output_features([{"label": None, "probabilities": [0.1, 0.7, 0.2]}])
    assert lm == {"prediction": ["1"]}


def test_roles_layout_and_training_rows():
    cols = [
        "timestamp",
        "request_id",
        "instance",
        "model_version",
        "latency_ms",
        "in_timestamp",
        "in_age",
        "prediction",
        "prob_yes",
        "label",
    ]
    roles = ls.column_roles(cols)
    assert roles["metadata"] == ["timestamp", "request_id", "instance", "model_version", "latency_ms"]
    assert roles["inputs"] == [
        "in_timestamp",
        "in_age",
    ]  # a table's own 'timestamp' column cannot collide with metadata
    assert roles["prediction"] == ["prediction"] and roles["probabilities"] == ["prob_yes"] and roles["other"] == []
    evald = pd.DataFrame({"id": [1], "pred": ["yes"], "prob_yes": [0.9], "label": ["yes"]})
    assert list(ls.to_monitor_layout(evald).columns) == ["id", "prediction", "prob_yes", "label"]
    window = pd.DataFrame({c: [1] for c in cols})
    assert list(ls.training_rows(window).columns) == ["timestamp", "age", "label"]


def _request(spec, instances, outputs, version="m/1", rid="r1"):
    return (instances, outputs, version, 3.5, rid, spec, datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_writer_rows_for_each_input_kind():
    """The request formats of the server (tensor `x`, byte-text `prompt`) become the spec's summary columns."""
    image = np.arange(64, dtype=np.float64).reshape(8, 8) / 64
    out = [{"label": "3", "probabilities": {"3": 1.0}}]
    t = log_table([_request(tensor_input((1, 8, 8)), [{"x": [image.tolist()]}], out)]).to_pylist()[0]
    assert t["in_mean"] == pytest.approx(image.mean()) and t["in_zero_share"] == 1 / 64 and t["prediction"] == "3"
    t = log_table(
        [
            _request(
                tokens_input(256, 32),
                [{"prompt": "héllo", "max_new_bytes": 0}],
                [{"label": None, "probabilities": [1.0]}],
            )
        ]
    ).to_pylist()[0]
    assert t["in_length"] == len("héllo".encode()) and t["in_high_id_share"] == 2 / 6 and t["prediction"] == "0"
    table = log_table([_request(TABLE, [{"age": 30, "job": "a"}, {"age": 41.5, "job": "b"}], [out[0], out[0]])])
    rows = table.to_pylist()
    assert [(r["instance"], r["in_age"], r["in_job"], r["label"]) for r in rows] == [
        (0, 30.0, "a", None),
        (1, 41.5, "b", None),
    ]
    assert (
        str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
        and str(table.schema.field("label").type) == "string"
    )
    assert table.column_names[:5] == list(ls.METADATA)


def test_versions_with_other_classes_read_as_one_log(tmp_path):
    """A hot-swapped version that predicts another class adds a column; the monitor reads both files."""
    a = log_table([_request(TABLE, [{"age": 1, "job": "a"}], [{"label": "x", "probabilities": {"x": 1.0}}], "m/1")])
    b = log_table(
        [_request(TABLE, [{"age": 2, "job": "a"}], [{"label": "y", "probabilities": {"x": 0.1, "y": 0.9}}], "m/2")]
    )
    pq.write_table(a, tmp_path / "part-a.parquet")
    pq.write_table(b, tmp_path / "part-b.parquet")
    windows, _ = load_log_windows(tmp_path, "10rows")
    assert [w.model_version for w in windows] == ["m/1", "m/2"]  # a window never mixes versions
    assert np.isnan(windows[0].frame["prob_y"].iloc[0]) and windows[1].frame["prob_y"].iloc[0] == 0.9
