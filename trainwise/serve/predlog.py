"""The prediction log: every served instance, appended in batches to a Parquet dataset.

The request path only appends a row to an in-memory buffer (a lock-protected list, microseconds);
a background thread writes the buffer out as one new Parquet file when it holds `flush_rows`
rows or is `flush_s` old, and on shutdown. Each file is written under a hidden name and then
renamed, so a reader (pyarrow.dataset, DuckDB `read_parquet('DIR/*.parquet')`, the monitor) never
sees a half-written file. Bound on loss: a crash loses the rows not yet flushed, at most
`flush_rows` rows or `flush_s` seconds of traffic; if the writer falls behind by `max_pending_rows`
rows (a slow or failing store), newer rows are dropped and counted rather than grow memory.

Columns: `ts` (UTC timestamp), `request_id`, `model_version`, `latency_ms`, `input` and
`probabilities` (JSON text), `label`, and for tabular models one `in_<column>` per input column.
`log_dir` is a local folder or any fsspec URL (s3://, gs://, memory://).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timezone


class PredictionLog:
    def __init__(self, log_dir: str, flush_rows: int = 256, flush_s: float = 2.0, max_pending_rows: int = 100_000):
        self.log_dir = log_dir
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.max_pending_rows = max_pending_rows

    def start(self) -> "PredictionLog":
        import fsspec

        self.fs_, self.root_ = fsspec.core.url_to_fs(self.log_dir)
        self.fs_.makedirs(self.root_, exist_ok=True)
        self.rows_: list[dict] = []
        self.lock_ = threading.Lock()
        self.wake_ = threading.Event()
        self.stopping_ = False
        self.dropped_rows_ = 0
        self.written_rows_ = 0
        self.write_errors_ = 0
        self.thread_ = threading.Thread(target=self._run, name="trainwise-predlog", daemon=True)
        self.thread_.start()
        return self

    def append(self, inputs: list[dict], outputs: list[dict], model_version: str, latency_ms: float, request_id: str) -> None:
        """Buffer one request's rows; never waits on the store."""
        now = datetime.now(timezone.utc)
        rows = [_row(i, o, model_version, latency_ms, request_id, now) for i, o in zip(inputs, outputs)]
        with self.lock_:
            if len(self.rows_) + len(rows) > self.max_pending_rows:
                self.dropped_rows_ += len(rows)
                return
            self.rows_.extend(rows)
            full = len(self.rows_) >= self.flush_rows
        if full:
            self.wake_.set()

    def stop(self) -> None:
        """Flush what is buffered and stop the writer thread."""
        self.stopping_ = True
        self.wake_.set()
        self.thread_.join(timeout=30)

    def _run(self) -> None:
        while True:
            self.wake_.wait(self.flush_s)
            self.wake_.clear()
            with self.lock_:
                rows, self.rows_ = self.rows_, []
            if rows:
                self._write(rows)
            if self.stopping_:
                with self.lock_:
                    rest, self.rows_ = self.rows_, []
                if rest:
                    self._write(rest)
                return

    def _write(self, rows: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.parquet"
        hidden, final = f"{self.root_}/.{name}", f"{self.root_}/{name}"
        try:
            with self.fs_.open(hidden, "wb") as f:
                pq.write_table(pa.Table.from_pylist(rows), f)
            self.fs_.mv(hidden, final)
            self.written_rows_ += len(rows)
        except Exception:  # noqa: BLE001 - a failing store must not take the server down; counted in /metrics
            self.write_errors_ += 1
            self.dropped_rows_ += len(rows)


def _row(inputs: dict, output: dict, model_version: str, latency_ms: float, request_id: str, now) -> dict:
    row = {"ts": now, "request_id": request_id, "model_version": model_version, "latency_ms": latency_ms,
           "input": json.dumps(inputs), "label": output.get("label"), "probabilities": json.dumps(output.get("probabilities"))}
    if all(isinstance(v, (int, float, str)) for v in inputs.values()):
        row.update({f"in_{k}": v for k, v in inputs.items()})
    return row


def read_prediction_log(log_dir: str):
    """The whole log as a pandas DataFrame (for tests and the monitor)."""
    import fsspec
    import pyarrow.dataset as ds

    fs, root = fsspec.core.url_to_fs(log_dir)
    return ds.dataset(root, filesystem=fs, format="parquet").to_table().to_pandas()
