"""A real server on a free port: predictions, validation, guards, metrics and model info."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import torch

from tests.serve.conftest import INSTANCE


def offline_probabilities(run_dir, rows: list[dict]) -> np.ndarray:
    """The same model run directly, without the server: the reference for the served answers."""
    from trainwise.rundir import load_model
    from trainwise.workloads.tabular import apply_preprocessing

    model, meta = load_model(run_dir)
    x = torch.from_numpy(apply_preprocessing(meta["info"]["preprocessing"], pd.DataFrame(rows)))
    with torch.inference_mode():
        return torch.softmax(model(x), dim=-1).numpy()


def test_predictions_equal_offline_model(tab_run, runtime, server, settings):
    rows = [
        INSTANCE,
        {**INSTANCE, "age": 52.0, "religious": 4.0, "education": "grade school"},
        {**INSTANCE, "yrs_married": 0.5},
    ]
    with server(runtime, settings()) as (url, _):
        r = httpx.post(f"{url}/v1/predict", json={"instances": rows})
        assert r.status_code == 200, r.text
        body = r.json()
    expected = offline_probabilities(tab_run, rows)
    got = np.array([[p["probabilities"][c] for c in ("no", "yes")] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in body["predictions"]] == [("no", "yes")[i] for i in expected.argmax(1)]
    assert body["model_version"] == runtime.version


def test_bad_payloads_get_422_with_field_path(runtime, server, settings):
    with server(runtime, settings()) as (url, _):
        wrong_type = httpx.post(f"{url}/v1/predict", json={"instances": [{**INSTANCE, "age": "old"}]})
        missing = httpx.post(
            f"{url}/v1/predict", json={"instances": [{k: v for k, v in INSTANCE.items() if k != "children"}]}
        )
        nan = httpx.post(
            f"{url}/v1/predict",
            content=json.dumps({"instances": [{**INSTANCE, "age": float("nan")}]}),
            headers={"content-type": "application/json"},
        )
        inf = httpx.post(
            f"{url}/v1/predict",
            content=json.dumps({"instances": [{**INSTANCE, "age": float("inf")}]}),
            headers={"content-type": "application/json"},
        )
        empty = httpx.post(f"{url}/v1/predict", json={"instances": []})
        not_json = httpx.post(f"{url}/v1/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert wrong_type.status_code == 422 and wrong_type.json()["detail"][0]["field"] == "instances[0].age"
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "instances[0].children"
    for r in (nan, inf):
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "instances[0].age"
        assert "finite" in r.json()["detail"][0]["message"]
    assert empty.status_code == 422 and not_json.status_code == 422
    for r in (wrong_type, missing, nan, not_json):
        assert "Traceback" not in r.text and 'File "' not in r.text


def test_api_keys_body_limit_and_rate_limit(runtime, server, settings, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# serving keys\nsecret-one\nsecret-two\n")
    cfg = settings(api_keys_file=str(keys), max_body_bytes=2000, rate_limit_per_s=0.2, rate_burst=3)
    body = {"instances": [INSTANCE]}
    with server(runtime, cfg) as (url, _):
        missing = httpx.post(f"{url}/v1/predict", json=body)
        wrong = httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": "Bearer secret-onf"})
        ok = httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": "Bearer secret-two"})
        big = httpx.post(
            f"{url}/v1/predict", json={"instances": [INSTANCE] * 30}, headers={"Authorization": "Bearer secret-one"}
        )
        statuses = [
            httpx.post(f"{url}/v1/predict", json=body, headers={"X-API-Key": "secret-one"}).status_code
            for _ in range(4)
        ]
        other_key = httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": "Bearer secret-two"})
        health = httpx.get(f"{url}/healthz")
    assert missing.status_code == 401 and wrong.status_code == 401
    assert ok.status_code == 200
    assert big.status_code == 413
    # secret-one spent 1 of its burst of 3 on the oversized request (the limit counts before the body)
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]
    assert other_key.status_code == 200  # the limit is per key
    assert health.status_code == 200  # health checks need no key


def test_chunked_oversized_body_gets_413(runtime, server, settings):
    def chunks():
        for _ in range(10):
            yield b" " * 500

    with server(runtime, settings(max_body_bytes=2000)) as (url, _):
        r = httpx.post(f"{url}/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_metrics_health_and_model_info(runtime, server, settings):
    with server(runtime, settings()) as (url, _):
        for _ in range(3):
            assert httpx.post(f"{url}/v1/predict", json={"instances": [INSTANCE, INSTANCE]}).status_code == 200
        httpx.post(f"{url}/v1/predict", json={"instances": [{}]})
        metrics = httpx.get(f"{url}/metrics").text
        ready = httpx.get(f"{url}/readyz").json()
        info = httpx.get(f"{url}/v1/model").json()
        openapi = httpx.get(f"{url}/openapi.json").json()
    assert 'trainwise_requests_total{status="200"} 3.0' in metrics
    assert 'trainwise_requests_total{status="422"} 1.0' in metrics
    assert "trainwise_inferences_total 6.0" in metrics
    assert "trainwise_queue_wait_seconds_count 3.0" in metrics and "trainwise_compute_seconds_count" in metrics
    assert f'trainwise_model_info{{precision="fp32",version="{runtime.version}"}} 1.0' in metrics
    assert ready["status"] == "ready" and info["model_version"] == runtime.version
    assert info["lineage"]["run_dir"] and "summary" in info["lineage"]
    props = openapi["components"]["schemas"]["TabularInstance"]["properties"]
    assert set(props) == set(INSTANCE)
