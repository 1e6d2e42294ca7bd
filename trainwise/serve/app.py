"""The FastAPI app: /v1/predict (batched), /v1/model, /healthz, /readyz, /metrics.

(No `from __future__ import annotations` here: FastAPI must see the per-model request class itself.)

`build_app(runtime, settings)` wires the pieces: the request schema of the model's workload (so
OpenAPI documents the real inputs), the batcher, the prediction log, the guards (keys, body size,
rate) and the alias poller for hot swaps. The served model lives in `state.runtime`; replacing
that reference is the whole swap (the batcher reads it once per batch).
"""

import asyncio
import contextlib
import gc
import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from trainwise.serve.batcher import Batcher, Overloaded
from trainwise.serve.finite import InstanceError
from trainwise.serve.metrics import ServeMetrics
from trainwise.serve.modelinfo import describe_model
from trainwise.serve.predlog import PredictionLog
from trainwise.serve.schemas import PredictResponse, request_model
from trainwise.serve.security import GuardMiddleware, TokenBucket, load_api_keys, send_json
from trainwise.serve.swap import poll_alias
from trainwise.workloads.inputs import input_spec_of

# Young-generation collections every 50,000 allocations instead of 700: a request allocates a few
# hundred objects, and fewer collections mean fewer pauses in the event loop (CPython gc docs).
GC_THRESHOLDS = (50_000, 20, 100)

log = logging.getLogger("trainwise.serve")


class ContainErrors:
    """ASGI middleware: an exception no handler answered becomes a 500 JSON answer and one log line.

    Starlette's own last-resort handler answers 500 too, but then re-raises, so uvicorn logs a
    traceback and closes the connection: a keep-alive client lost its next request with it
    (issue 16). Here the exception stops, and the connection stays usable.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as e:  # noqa: BLE001 - the last resort: no stack trace leaves the server, no connection is dropped
            log.error("%s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(e).__name__, e)
            if started:
                raise  # half an answer was sent: only closing the connection can end it
            await send_json(send, 500, "internal error")


class ServeState:
    """What the running app holds: the current model and the long-lived helpers."""

    def __init__(self, runtime, settings, ref: str | None = None, tracking_uri: str | None = None):
        self.runtime = runtime
        self.settings = settings  # a ServeConfig
        self.ref = ref
        self.tracking_uri = tracking_uri
        self.metrics = ServeMetrics()
        self.ready = False


def _field_path(loc) -> str:
    parts = [p for p in loc if p != "body"]
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(parts))


def build_app(runtime, settings, ref: str | None = None, tracking_uri: str | None = None) -> FastAPI:
    state = ServeState(runtime, settings, ref, tracking_uri)
    app = FastAPI(
        title="trainwise serve",
        version=runtime.version,
        lifespan=_lifespan(state, runtime),
        description=f"Predictions of {runtime.meta.get('workload', 'a')} model {runtime.version}",
    )
    app.state.serve = state
    _add_guards(app, state)
    app.add_exception_handler(RequestValidationError, _invalid)
    _add_predict(app, state, request_model(runtime.meta, settings.max_instances))
    _add_info_routes(app, state)
    return app


def _lifespan(state: ServeState, runtime):
    """Start the batcher, the prediction log and the alias poller; tune the GC; undo it all at shutdown.
    `runtime` is the model served first (the metrics name it)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        settings = state.settings
        state.batcher = await Batcher(
            lambda: state.runtime,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.queue_size,
            on_batch=state.metrics.on_batch,
        ).start()
        state.predlog = (
            PredictionLog(settings.log_dir, settings.log_flush_rows, settings.log_flush_s).start()
            if settings.log_dir
            else None
        )
        state.metrics.set_model(runtime.version, runtime.precision)
        polls = state.ref and "@" in state.ref and settings.poll_alias_s > 0
        poller = asyncio.create_task(poll_alias(state)) if polls else None
        # Move everything loaded so far (torch, pandas, mlflow, the model) out of the cyclic GC's
        # reach: otherwise each full collection re-scans millions of start-up objects and stalls the
        # event loop for hundreds of ms, which showed as the p99 of the load test (docs/serve.md).
        gc.collect()
        gc.freeze()
        old_thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        state.ready = True
        yield
        state.ready = False
        if poller:
            poller.cancel()
        await state.batcher.stop()
        if state.predlog:
            state.predlog.stop()
        gc.set_threshold(*old_thresholds)  # an embedding process (tests) gets its GC back
        gc.unfreeze()

    return lifespan


def _add_guards(app: FastAPI, state: ServeState) -> None:
    """API keys, body size and rate limits (GuardMiddleware), around ContainErrors."""
    settings = state.settings
    keys = load_api_keys(settings.api_keys_file) if settings.api_keys_file else None
    clients = settings.rate_limit_clients
    state.limiter = (
        TokenBucket(settings.rate_limit_per_s, settings.rate_burst, clients) if settings.rate_limit_per_s > 0 else None
    )
    state.auth_failures = (
        TokenBucket(settings.auth_failures_per_s, settings.auth_failures_burst, clients) if keys else None
    )  # key guessing
    app.add_middleware(ContainErrors)  # inside the guards (added before them), so that its 500s are counted too
    app.add_middleware(
        GuardMiddleware,
        keys=keys,
        max_body_bytes=settings.max_body_bytes,
        limiter=state.limiter,
        auth_failures=state.auth_failures,
        on_status=lambda s: state.metrics.requests.labels(status=str(s)).inc(),
    )


async def _invalid(request: Request, exc: RequestValidationError):
    errors = [{"field": _field_path(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def _bad_request_id(request_id: str) -> JSONResponse | None:
    """A 422 for an X-Request-ID the prediction log could not hold, else None."""
    if len(request_id) <= 200 and request_id.isprintable():
        return None
    return JSONResponse(
        {
            "detail": [
                {
                    "field": "X-Request-ID",
                    "message": "expected at most 200 printable characters",
                    "type": "value_error",
                }
            ]
        },
        status_code=422,
    )


def _refused(outputs: list) -> list[dict]:
    """The instances the model refused (a value the model's dtype cannot hold, serve/finite.py)."""
    return [
        {
            "field": f"instances[{i}]" + (f".{o.field}" if o.field else ""),
            "message": o.message,
            "type": "value_error",
        }
        for i, o in enumerate(outputs)
        if isinstance(o, InstanceError)
    ]


def _add_predict(app: FastAPI, state: ServeState, request_cls) -> None:
    """POST /v1/predict, its body validated by the model's own request class (`request_cls`)."""

    @app.post("/v1/predict", response_model=PredictResponse)
    async def predict(body: request_cls, request: Request):  # type: ignore[valid-type]
        arrived = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        bad_id = _bad_request_id(request_id)
        if bad_id is not None:
            return bad_id
        instances = [inst.model_dump() for inst in body.instances]
        if not hasattr(state, "example_"):
            state.example_ = instances[:1]  # warms a hot-swapped model before it takes traffic
        try:
            result = await state.batcher.submit(instances)
        except Overloaded as e:
            return JSONResponse(
                {"detail": "server busy: the request queue is full"},
                status_code=503,
                headers={"Retry-After": str(int(round(e.retry_after_s)))},
            )
        refused = _refused(result.outputs)
        if refused:  # a value the model's dtype cannot hold (serve/finite.py): this request only
            return JSONResponse({"detail": refused}, status_code=422)
        latency_s = time.perf_counter() - arrived
        state.metrics.latency.observe(latency_s)
        state.metrics.queue_wait.observe(result.queue_wait_s)
        if state.predlog:
            state.predlog.append(
                instances,
                result.outputs,
                result.version,
                latency_s * 1000,
                request_id,
                input_spec_of(state.runtime.meta),
            )
        # JSONResponse directly: re-validating our own output through response_model costs more per
        # request than a small model's prediction; the declared response_model still documents it.
        # X-Request-ID names the request in the prediction log: labels that arrive later join on it.
        return JSONResponse(
            {"predictions": result.outputs, "model_version": result.version}, headers={"X-Request-ID": request_id}
        )


def _add_info_routes(app: FastAPI, state: ServeState) -> None:
    """GET /v1/model, /healthz, /readyz and /metrics."""

    @app.get("/v1/model")
    async def model_info():
        return await asyncio.to_thread(describe_model, state.runtime, state.tracking_uri)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return {"status": "ready", "model_version": state.runtime.version}

    @app.get("/metrics")
    async def metrics():
        state.metrics.queue_depth.set(state.batcher.depth())
        if state.predlog:
            state.metrics.log_dropped.set(state.predlog.dropped_rows_)
        return PlainTextResponse(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
