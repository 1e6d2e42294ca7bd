"""The prediction log holds exactly the requests served, and never blocks on the store."""

from __future__ import annotations

import time

import httpx

from tests.serve.conftest import INSTANCE
from trainwise.serve.predlog import PredictionLog, read_prediction_log


def test_log_holds_exactly_the_served_requests(runtime, server, settings, tmp_path):
    log_dir = tmp_path / "predlog"
    sent = [{**INSTANCE, "age": float(20 + i)} for i in range(25)]
    answers, request_ids = [], []
    with server(runtime, settings(log_dir=str(log_dir), log_flush_rows=7, log_flush_s=0.2)) as (url, _):
        for i in range(0, 25, 5):
            r = httpx.post(f"{url}/v1/predict", json={"instances": sent[i : i + 5]})
            answers += r.json()["predictions"]
            request_ids += [r.headers["x-request-id"]] * 5
        rejected = httpx.post(f"{url}/v1/predict", json={"instances": [{**INSTANCE, "age": "x"}]})
    assert rejected.status_code == 422
    log = read_prediction_log(str(log_dir)).sort_values("in_age").reset_index(drop=True)
    assert len(log) == 25  # the 422 is not a served prediction
    assert log["in_age"].tolist() == [float(20 + i) for i in range(25)]
    assert [
        {k: row[f"in_{k}"] for k in INSTANCE} for row in log.to_dict("records")
    ] == sent  # every declared column, raw
    assert log["prediction"].tolist() == [a["label"] for a in answers]
    for cls in answers[0]["probabilities"]:
        assert log[f"prob_{cls}"].tolist() == [a["probabilities"][cls] for a in answers]
    assert log["label"].isna().all()  # true labels arrive later (monitor --labels), never the prediction
    assert set(log["model_version"]) == {runtime.version}
    assert log["request_id"].tolist() == request_ids and log["instance"].tolist() == [0, 1, 2, 3, 4] * 5
    assert str(log["timestamp"].dt.tz) == "UTC" and (log["latency_ms"] > 0).all()
    assert len(list(log_dir.glob("part-*.parquet"))) >= 2  # appended in several flushes
    assert not list(log_dir.glob(".*"))  # no half-written file left behind


def test_client_request_id_is_echoed_and_logged(runtime, server, settings, tmp_path):
    log_dir = tmp_path / "predlog"
    with server(runtime, settings(log_dir=str(log_dir), log_flush_s=0.05)) as (url, _):
        r = httpx.post(f"{url}/v1/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "order-17"})
        bad = httpx.post(f"{url}/v1/predict", json={"instances": [INSTANCE]}, headers={"X-Request-ID": "x" * 201})
    assert r.status_code == 200 and r.headers["x-request-id"] == "order-17"
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "X-Request-ID"
    assert read_prediction_log(str(log_dir))["request_id"].tolist() == ["order-17"]


def test_append_does_not_wait_for_a_slow_store(tmp_path):
    log = PredictionLog(str(tmp_path / "slow"), flush_rows=1, flush_s=10).start()
    real_write = log._write
    log._write = lambda rows: (time.sleep(0.5), real_write(rows))  # a store that takes 0.5 s per file
    start = time.perf_counter()
    for i in range(50):
        log.append([{"a": float(i)}], [{"label": "x", "probabilities": {"x": 1.0}}], "v1", 1.0, f"r{i}")
    append_s = time.perf_counter() - start
    log.stop()
    assert append_s < 0.25
    assert len(read_prediction_log(str(tmp_path / "slow"))) == 50


def test_fsspec_url(tmp_path):
    log = PredictionLog("memory://trainwise-test-log", flush_rows=2, flush_s=0.05).start()
    for i in range(3):
        log.append([{"a": float(i)}], [{"label": "x", "probabilities": {"x": 1.0}}], "v1", 1.0, f"r{i}")
    log.stop()
    assert sorted(read_prediction_log("memory://trainwise-test-log")["in_a"]) == [0.0, 1.0, 2.0]
