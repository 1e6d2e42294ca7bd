"""Prometheus metrics of one server, in its own registry (so several apps can live in one process).

Queue wait (enqueue -> its batch starts) and compute (one model call per batch) are separate
histograms, so a slow p99 can be told apart: waiting for a batch to fill vs the model itself.
Average batch = trainwise_inferences_total / trainwise_batches_total (also exported as a gauge).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets in seconds from 0.5 ms to 10 s, about 1.5x apart: localhost inference of small
# models sits in the low milliseconds, where Prometheus's default buckets (5 ms and up) would lump
# everything together, and a p99 read from the histogram is only as fine as its buckets.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServeMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("trainwise_requests", "API requests by HTTP status", ["status"], registry=r)
        self.latency = Histogram(
            "trainwise_request_latency_seconds",
            "predict latency, arrival to answer",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "trainwise_queue_wait_seconds",
            "time a request waited for its batch to start",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.compute = Histogram(
            "trainwise_compute_seconds", "model time per batch", buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.batch_size = Histogram(
            "trainwise_batch_size", "instances per model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.inferences = Counter("trainwise_inferences", "instances predicted", registry=r)
        self.batches = Counter("trainwise_batches", "model calls (batches) run", registry=r)
        self.average_batch = Gauge("trainwise_average_batch_size", "inferences / batches since start", registry=r)
        self.model_info = Gauge(
            "trainwise_model_info", "the served model version (value 1)", ["version", "precision"], registry=r
        )
        self.queue_depth = Gauge("trainwise_queue_depth", "requests waiting for a batch", registry=r)
        self.swaps = Counter("trainwise_model_swaps", "hot swaps to a new model version", registry=r)
        self.log_dropped = Gauge(
            "trainwise_prediction_log_dropped_rows", "prediction-log rows lost (store failing or behind)", registry=r
        )
        self.n_inferences_, self.n_batches_ = 0, 0

    def on_batch(self, n_instances: int, compute_s: float) -> None:
        self.batch_size.observe(n_instances)
        self.compute.observe(compute_s)
        self.inferences.inc(n_instances)
        self.batches.inc()
        self.n_inferences_ += n_instances
        self.n_batches_ += 1
        self.average_batch.set(self.n_inferences_ / self.n_batches_)

    def set_model(self, version: str, precision: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version, precision=precision).set(1)
