"""Start the HTTP server: load the model, build the app, run uvicorn (the `trainwise serve` verb)."""

from __future__ import annotations

import sys

from trainwise.ports import check_port_free


def run_server(ref: str, cfg, host: str, port: int) -> None:
    """Serve `ref` (NAME@ALIAS, NAME/VERSION or a run directory) on host:port until stopped."""
    # Fail before loading anything when the port is taken (uvicorn would only log and exit 1).
    check_port_free(host, port, f"--host {host} --port {port}")
    # lazy: the port check above fails before loading anything; torch, uvicorn and the app (fastapi, the
    # model runtime) load only once the port is known free
    import torch
    import uvicorn

    # lazy: as above (the app imports fastapi and the model runtime)
    from trainwise.serve.app import build_app
    from trainwise.serve.runtime import load_runtime

    if cfg.serve.threads:
        torch.set_num_threads(cfg.serve.threads)
    tracking_uri = cfg.registry.tracking_uri or None
    runtime = load_runtime(ref, cfg.serve.precision, tracking_uri)
    app = build_app(runtime, cfg.serve, ref=ref, tracking_uri=tracking_uri)
    print(
        f"trainwise serve: {runtime.version} ({cfg.serve.precision}) on http://{host}:{port} "
        f"(max_batch_size={cfg.serve.max_batch_size}, max_wait_ms={cfg.serve.max_wait_ms})",
        file=sys.stderr,
        flush=True,
    )
    # No access log: one log line per request costs more than a small model's prediction.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
