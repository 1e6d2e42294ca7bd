"""Dynamic batching: requests wait in a bounded queue and run together in one model call.

A batch closes when it holds `max_batch_size` instances or when its first request has waited
`max_wait_ms`, whichever comes first (the policy of NVIDIA Triton's dynamic batcher and
TorchServe's batch_size/max_batch_delay). The model runs in one dedicated worker thread, so the
event loop keeps accepting requests while a batch computes, and torch sees one caller at a time.
A full queue raises `Overloaded` at once (the app answers 503 with Retry-After), so memory held
by waiting requests is bounded by queue_size x max_instances. A batch that raises is run again one
request at a time, so one request's failure is never another's: an input the model cannot take is
not an exception at all but an `InstanceError` for that instance (serve/finite.py, answered 422).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable


class Overloaded(Exception):
    """The queue is full; the caller should retry after `retry_after_s`."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"queue full; retry after {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s


@dataclass
class BatchResult:
    outputs: list
    version: str
    queue_wait_s: float
    compute_s: float
    batch_instances: int


class Batcher:
    """Collects submitted instance lists into batches and runs `get_runtime().predict` on each.

    `get_runtime` is called once per batch, so a hot swap takes effect between batches and never
    inside one. `on_batch(n_instances, compute_s)` is called after each batch (metrics).
    """

    def __init__(
        self,
        get_runtime: Callable,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        queue_size: int = 1024,
        on_batch: Callable | None = None,
    ):
        self.get_runtime = get_runtime
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.queue_size = queue_size
        self.on_batch = on_batch

    async def start(self) -> "Batcher":
        self.queue_: asyncio.Queue = asyncio.Queue(maxsize=self.queue_size)
        self.executor_ = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainwise-infer")
        self.last_compute_s_ = 0.005
        self.task_ = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self.task_.cancel()
        try:
            await self.task_
        except asyncio.CancelledError:
            pass
        self.executor_.shutdown(wait=True)

    def depth(self) -> int:
        return self.queue_.qsize()

    async def submit(self, instances: list) -> BatchResult:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue_.put_nowait((instances, future, time.perf_counter()))
        except asyncio.QueueFull:
            # The queue drains at about one batch per compute time: suggest waiting for that.
            batches_ahead = self.queue_size / max(self.max_batch_size, 1)
            raise Overloaded(max(1.0, batches_ahead * self.last_compute_s_)) from None
        return await future

    async def _collect(self) -> list:
        first = await self.queue_.get()
        batch, n = [first], len(first[0])
        deadline = time.perf_counter() + self.max_wait_ms / 1000
        while n < self.max_batch_size:
            remaining_s = deadline - time.perf_counter()
            try:
                item = (
                    self.queue_.get_nowait()
                    if remaining_s <= 0
                    else await asyncio.wait_for(self.queue_.get(), remaining_s)
                )
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            batch.append(item)
            n += len(item[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [b for b in batch if not b[1].done()]  # clients that went away
            if not batch:
                continue
            runtime = self.get_runtime()
            flat = [inst for instances, _, _ in batch for inst in instances]
            start = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self.executor_, runtime.predict, flat)
            except Exception as e:  # noqa: BLE001 - some request broke the whole batch: find which
                if len(batch) == 1:
                    batch[0][1].set_exception(e)  # answered 500 there
                else:
                    await self._run_alone(batch, runtime)
                continue
            compute_s = time.perf_counter() - start
            self.last_compute_s_ = compute_s
            if self.on_batch:
                self.on_batch(len(flat), compute_s)
            i = 0
            for instances, future, enqueued in batch:
                if not future.done():
                    future.set_result(
                        BatchResult(
                            outputs[i : i + len(instances)], runtime.version, start - enqueued, compute_s, len(flat)
                        )
                    )
                i += len(instances)

    async def _run_alone(self, batch: list, runtime) -> None:
        """Run each request of a failed batch by itself, so that the request that failed it gets the
        error (answered 500 there) and the others their predictions."""
        loop = asyncio.get_running_loop()
        for instances, future, enqueued in batch:
            if future.done():
                continue
            start = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self.executor_, runtime.predict, instances)
            except Exception as e:  # noqa: BLE001 - delivered to this request only
                future.set_exception(e)
                continue
            compute_s = time.perf_counter() - start
            if not future.done():
                future.set_result(BatchResult(outputs, runtime.version, start - enqueued, compute_s, len(instances)))
