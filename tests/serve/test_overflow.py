"""A value the model's dtype cannot hold gets a 422 naming the field, never a 500, and never costs
another request its answer or its connection.

On the code before this, `1e308` in a numeric column became (1e308 - mean) / scale = inf in float32,
the probabilities came out NaN, rendering them as JSON raised, the client got a 500, the server
log a traceback, and the next request on the same keep-alive connection was reset. A float32
tensor value of 1e39 took the same path.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import INSTANCE

RECIPE = str(Path(__file__).resolve().parents[2] / "configs" / "vision.toml")


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    """A user's GRU over float32 (10, 3) tensors (tests/user_models.py), declared input without a value range."""
    from trainwise.cli import main

    run = tmp_path_factory.mktemp("overflow") / "seq"
    settings = [
        "workload.name=entry",
        "workload.entry=tests.user_models:sequence_workload",
        "model.d_model=8",
        "model.n_layers=1",
        "train.steps=3",
        "train.threads=1",
        "train.checkpoint_every=0",
        "log.mlflow=false",
        "log.progress=false",
    ]
    assert main(["train", RECIPE, *[a for s in settings for a in ("--set", s)], "--run-dir", str(run)]) == 0
    return run


def one_connection(url: str) -> httpx.Client:
    """A keep-alive client that has a single connection: a reset one shows as an error on the next request."""
    return httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


def assert_422_then_served(client, bad: dict, good: dict, field: str, words: str):
    r = client.post("/v1/predict", json={"instances": [good, bad]})
    assert r.status_code == 422, r.text
    [detail] = r.json()["detail"]
    assert detail["field"] == field and words in detail["message"], detail
    after = client.post("/v1/predict", json={"instances": [good]})  # the same connection, still open
    assert after.status_code == 200, after.text


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_table_values_that_overflow_after_scaling_get_422(tab_run, server, settings, precision, capfd):
    from trainwise.serve.runtime import load_runtime

    runtime = load_runtime(str(tab_run), precision)
    with server(runtime, settings()) as (url, _), one_connection(url) as client:
        # 1e308 is a finite float64, but (1e308 - mean) / scale is not a float32: refused before the model runs
        assert_422_then_served(
            client, {**INSTANCE, "age": 1e308}, INSTANCE, "instances[1].age", "overflows the model's"
        )
        # 1e30 scales to a finite float32 the model then overflows on: named by the input farthest out
        assert_422_then_served(
            client,
            {**INSTANCE, "yrs_married": 1e30},
            INSTANCE,
            "instances[1].yrs_married",
            "the model's output overflows (is not finite) on this instance",
        )
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(
    "precision, value, words",
    [
        (
            "fp32",
            1e39,
            "x[4][1] = 1e+39: outside the range of float32",
        ),  # not a float32 at all: refused by the request schema
        (
            "bf16",
            3.4e38,
            "x[4][1] = 3.4e+38 overflows the model's bfloat16 input",
        ),  # a float32, but infinity once the bf16 model reads it
    ],
)
def test_tensor_values_beyond_the_dtype_get_422(seq_run, server, settings, precision, value, words, capfd):
    from trainwise.serve.runtime import load_runtime

    runtime = load_runtime(str(seq_run), precision)
    good = {"x": [[0.1, -0.2, 0.3]] * 10}
    bad = {"x": [[0.1, -0.2, 0.3]] * 4 + [[0.1, value, 0.3]] + [[0.1, -0.2, 0.3]] * 5}
    with server(runtime, settings()) as (url, _), one_connection(url) as client:
        assert_422_then_served(client, bad, good, "instances[1].x", words)
    assert "Traceback" not in capfd.readouterr().err


def test_an_overflowing_request_does_not_fail_the_requests_batched_with_it(tab_run, server, settings):
    from trainwise.serve.runtime import load_runtime

    runtime = load_runtime(str(tab_run))
    statuses: dict[str, list[int]] = {"good": [], "bad": []}

    def send(url, kind):
        instance = {**INSTANCE, "age": 1e308 if kind == "bad" else 40.0}
        with httpx.Client(timeout=30) as c:
            statuses[kind].append(c.post(f"{url}/v1/predict", json={"instances": [instance]}).status_code)

    # a long batching window: requests sent together run in the same model call
    with server(runtime, settings(max_wait_ms=300.0)) as (url, _):
        threads = [threading.Thread(target=send, args=(url, kind)) for kind in ["good"] * 6 + ["bad"] * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == {"good": [200] * 6, "bad": [422] * 2}


class FailsOnAge13:
    """A served model's runtime that raises for one request (age 13): a bug, not bad input."""

    def __init__(self, runtime):
        self.inner, self.version = runtime, runtime.version

    def predict(self, instances):
        if any(inst.get("age") == 13.0 for inst in instances):
            raise RuntimeError("boom")
        return self.inner.predict(instances)


def test_an_unexpected_error_fails_only_its_own_request_and_keeps_the_connection(
    runtime, server, settings, capfd, caplog
):
    others: list[int] = []
    with server(runtime, settings(max_wait_ms=300.0)) as (url, app), one_connection(url) as client:
        app.state.serve.runtime = FailsOnAge13(runtime)  # what the batcher reads per batch

        def other():
            with httpx.Client(timeout=30) as c:
                others.append(c.post(f"{url}/v1/predict", json={"instances": [INSTANCE]}).status_code)

        threads = [threading.Thread(target=other) for _ in range(3)]
        for t in threads:
            t.start()
        r = client.post("/v1/predict", json={"instances": [{**INSTANCE, "age": 13.0}]})
        for t in threads:
            t.join()
        assert r.status_code == 500 and r.json() == {"detail": "internal error"}
        assert client.post("/v1/predict", json={"instances": [INSTANCE]}).status_code == 200  # same connection
    assert others == [200, 200, 200]
    assert [(rec.getMessage(), rec.exc_info) for rec in caplog.records if rec.name == "trainwise.serve"] == [
        ("POST /v1/predict failed: RuntimeError: boom", None)
    ]  # one line, no traceback
    assert "Traceback" not in capfd.readouterr().err
