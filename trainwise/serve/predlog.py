"""The prediction log: every served instance, appended in batches to a Parquet dataset.

The request path only appends the request (its validated instances and outputs, by reference) to
an in-memory buffer (a lock-protected list, microseconds); a background thread turns the buffer
into rows and writes them out as one new Parquet file when it holds `flush_rows` rows or is
`flush_s` old, and on shutdown. Each file is written under a hidden name and then renamed, so a
reader (pyarrow.dataset, DuckDB `read_parquet('DIR/*.parquet')`, the monitor) never sees a
half-written file. Bound on loss: a crash loses the rows not yet flushed, at most `flush_rows`
rows or `flush_s` seconds of traffic; if the writer falls behind by `max_pending_rows` rows (a
slow or failing store), newer rows are dropped and counted rather than grow memory.

Columns: the one log schema of trainwise.monitor.logschema (metadata, `in_` inputs built from the
model's input spec, `prediction`, `prob_<class>`, `label`), which `trainwise monitor --log` reads.
`log_dir` is a local folder or any fsspec URL (s3://, gs://, memory://).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

from trainwise.monitor import logschema as ls
from trainwise.serve.runtime import token_ids


class PredictionLog:
    def __init__(self, log_dir: str, flush_rows: int = 256, flush_s: float = 2.0, max_pending_rows: int = 100_000):
        self.log_dir = log_dir
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.max_pending_rows = max_pending_rows

    def start(self) -> "PredictionLog":
        # lazy: fsspec, as pyarrow in _write: only a server with serve.log_dir set writes
        import fsspec

        self.fs_, self.root_ = fsspec.core.url_to_fs(self.log_dir)
        self.fs_.makedirs(self.root_, exist_ok=True)
        self.requests_: list[tuple] = []
        self.pending_rows_ = 0
        self.lock_ = threading.Lock()
        self.wake_ = threading.Event()
        self.stopping_ = False
        self.dropped_rows_ = 0
        self.written_rows_ = 0
        self.write_errors_ = 0
        self.thread_ = threading.Thread(target=self._run, name="trainwise-predlog", daemon=True)
        self.thread_.start()
        return self

    def append(
        self,
        inputs: list[dict],
        outputs: list[dict],
        model_version: str,
        latency_ms: float,
        request_id: str,
        input_spec: dict | None = None,
    ) -> None:
        """Buffer one request (rows are built by the writer thread); never waits on the store.

        `input_spec` is the serving model's (trainwise.workloads.inputs): it says which `in_`
        columns the instances become.
        """
        entry = (inputs, outputs, model_version, latency_ms, request_id, input_spec, datetime.now(timezone.utc))
        with self.lock_:
            if self.pending_rows_ + len(inputs) > self.max_pending_rows:
                self.dropped_rows_ += len(inputs)
                return
            self.requests_.append(entry)
            self.pending_rows_ += len(inputs)
            full = self.pending_rows_ >= self.flush_rows
        if full:
            self.wake_.set()

    def stop(self) -> None:
        """Flush what is buffered and stop the writer thread."""
        self.stopping_ = True
        self.wake_.set()
        self.thread_.join(timeout=30)

    def _take(self) -> list[tuple]:
        with self.lock_:
            taken, self.requests_, self.pending_rows_ = self.requests_, [], 0
        return taken

    def _run(self) -> None:
        while True:
            self.wake_.wait(self.flush_s)
            self.wake_.clear()
            taken = self._take()
            if taken:
                self._write(taken)
            if self.stopping_:
                rest = self._take()
                if rest:
                    self._write(rest)
                return

    def _write(self, requests: list[tuple]) -> None:
        # lazy: pyarrow is only needed by a server that writes a log (serve.log_dir set)
        import pyarrow.parquet as pq

        n_rows = sum(len(r[0]) for r in requests)
        name = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.parquet"
        hidden, final = f"{self.root_}/.{name}", f"{self.root_}/{name}"
        try:
            table = log_table(requests)
            with self.fs_.open(hidden, "wb") as f:
                pq.write_table(table, f)
            self.fs_.mv(hidden, final)
            self.written_rows_ += n_rows
        except Exception:  # noqa: BLE001 - a failing store must not take the server down; counted in /metrics
            self.write_errors_ += 1
            self.dropped_rows_ += n_rows


def log_table(requests: list[tuple]):
    """The buffered requests as one Arrow table in the log schema (versions with other columns: nulls)."""
    # lazy: pyarrow, as in _write
    import pyarrow as pa

    groups: dict[str, list[tuple]] = {}
    for r in requests:
        groups.setdefault(r[2], []).append(r)
    tables = []
    for group in groups.values():
        columns: dict[str, list] = {}
        for inputs, outputs, version, latency_ms, request_id, spec, now in group:
            n = len(inputs)
            part = {
                ls.TIMESTAMP: [now] * n,
                ls.REQUEST_ID: [request_id] * n,
                ls.INSTANCE: list(range(n)),
                ls.MODEL_VERSION: [version] * n,
                ls.LATENCY_MS: [float(latency_ms)] * n,
                **ls.input_features(spec, [example_of(spec, i) for i in inputs]),
                **ls.output_features(outputs),
                ls.LABEL: [None] * n,
            }
            filled = len(columns.get(ls.TIMESTAMP, []))
            for key in part.keys() | columns.keys():
                columns.setdefault(key, [None] * filled).extend(part.get(key, [None] * n))
        order = sorted(columns, key=_column_order)
        tables.append(ls.to_arrow({k: columns[k] for k in order}, group[0][5]))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def _column_order(name: str) -> tuple:
    if name in ls.METADATA:
        return (0, ls.METADATA.index(name), name)
    rank = (
        1
        if name.startswith(ls.INPUT_PREFIX)
        else 2
        if name == ls.PREDICTION
        else 3
        if name.startswith(ls.PROB_PREFIX)
        else 4
    )
    return (rank, 0, name)


def example_of(spec: dict | None, instance: dict):
    """The example an instance carries, in the form logschema.input_features takes for the spec.

    A table's instance is its column dict; a tensor model's carries its tensor in `x` (nested
    lists); a token model's carries `ids`, or a text `prompt` whose UTF-8 bytes are the ids. The
    request format itself is defined in trainwise.serve.schemas.
    """
    if spec is None or spec["kind"] == "table":
        return instance
    if spec["kind"] == "tokens":
        return token_ids(instance)
    return instance["x"]


def read_prediction_log(log_dir: str):
    """The whole log as a pandas DataFrame (for tests and the monitor)."""
    # lazy: fsspec, pyarrow and pandas are only needed to read a log; the monitor imports this module for its
    # schema too
    import fsspec
    import pyarrow.dataset as ds

    fs, root = fsspec.core.url_to_fs(log_dir)
    files = [f for f in fs.glob(f"{root}/*.parquet") if not f.rsplit("/", 1)[-1].startswith(".")]
    if not files:
        # lazy: pandas is only needed when a log is read back, not by the serving path
        import pandas as pd

        return pd.DataFrame()
    return ds.dataset(files, filesystem=fs, format="parquet", schema=_unified_schema(fs, files)).to_table().to_pandas()


def _unified_schema(fs, files: list[str]):
    """One schema over every file (a hot-swapped version may add prob_<class> columns)."""
    # lazy: pyarrow, as in _write
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.unify_schemas([pq.read_schema(f, filesystem=fs) for f in files])
