"""The batcher: requests run together, answers go back to their own callers, a full queue is 503."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from tests.serve.conftest import INSTANCE
from trainwise.serve.batcher import Batcher, Overloaded


class EchoRuntime:
    """Returns each instance's own number, records batch sizes, optionally sleeps per batch."""

    version = "echo/1"

    def __init__(self, sleep_s: float = 0.0):
        self.sleep_s, self.batches = sleep_s, []

    def predict(self, instances):
        self.batches.append(len(instances))
        time.sleep(self.sleep_s)
        return [{"x": i["x"]} for i in instances]


def test_concurrent_requests_share_batches_and_get_their_own_answers():
    runtime = EchoRuntime(sleep_s=0.01)

    async def main():
        batcher = await Batcher(lambda: runtime, max_batch_size=8, max_wait_ms=20, queue_size=100).start()
        results = await asyncio.gather(*(batcher.submit([{"x": i}, {"x": -i}]) for i in range(20)))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert [[o["x"] for o in r.outputs] for r in results] == [[i, -i] for i in range(20)]
    assert sum(runtime.batches) == 40 and max(runtime.batches) == 8 and len(runtime.batches) == 5
    assert all(r.batch_instances >= 2 and r.queue_wait_s >= 0 and r.compute_s >= 0.01 for r in results)


def test_max_batch_size_one_runs_each_request_alone():
    runtime = EchoRuntime()

    async def main():
        batcher = await Batcher(lambda: runtime, max_batch_size=1, max_wait_ms=50, queue_size=100).start()
        await asyncio.gather(*(batcher.submit([{"x": i}]) for i in range(6)))
        await batcher.stop()

    asyncio.run(main())
    assert runtime.batches == [1] * 6


def test_full_queue_raises_overloaded():
    runtime = EchoRuntime(sleep_s=0.2)

    async def main():
        batcher = await Batcher(lambda: runtime, max_batch_size=1, max_wait_ms=0, queue_size=2).start()
        tasks = [asyncio.create_task(batcher.submit([{"x": i}])) for i in range(6)]
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return done

    done = asyncio.run(main())
    overloaded = [d for d in done if isinstance(d, Overloaded)]
    assert len(overloaded) == 4 and all(d.retry_after_s >= 1 for d in overloaded)


class SlowRuntime:
    """The real model, slowed down so that the queue fills."""

    def __init__(self, runtime, sleep_s: float):
        self.runtime, self.sleep_s = runtime, sleep_s
        self.version, self.meta, self.precision, self.model_dir = (
            runtime.version,
            runtime.meta,
            runtime.precision,
            runtime.model_dir,
        )

    def predict(self, instances):
        time.sleep(self.sleep_s)
        return self.runtime.predict(instances)


def test_full_queue_answers_503_with_retry_after(runtime, server, settings):
    statuses, retry_after = [], []

    def client(url):
        r = httpx.post(f"{url}/v1/predict", json={"instances": [INSTANCE]}, timeout=30)
        statuses.append(r.status_code)
        if r.status_code == 503:
            retry_after.append(r.headers.get("retry-after"))

    with server(SlowRuntime(runtime, 0.3), settings(max_batch_size=1, max_wait_ms=0, queue_size=2)) as (url, _):
        threads = [threading.Thread(target=client, args=(url,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses.count(503) >= 3 and statuses.count(200) >= 2, statuses
    assert set(statuses) <= {200, 503}
    assert all(v is not None and int(v) >= 1 for v in retry_after)


def test_model_failure_is_500_without_traceback(runtime, server, settings):
    class Broken(SlowRuntime):
        def predict(self, instances):
            raise RuntimeError("secret internal detail")

    with server(Broken(runtime, 0), settings()) as (url, _):
        r = httpx.post(f"{url}/v1/predict", json={"instances": [INSTANCE]})
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text
