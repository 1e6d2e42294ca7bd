"""`trainwise serve` and `trainwise export` verbs."""

from __future__ import annotations

import errno
import json
import socket
import sys

from trainwise.errors import ConfigError, TrainwiseError


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP with dynamic batching, metrics and a prediction log",
        description="Serve NAME@ALIAS, NAME/VERSION or a run directory: POST /v1/predict, GET /v1/model, "
        "/healthz, /readyz, /metrics. Settings are the serve.* config fields (trainwise config --explain).",
    )
    p.add_argument("ref", metavar="NAME@ALIAS|RUN_DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--config", default=None, metavar="FILE", help="TOML file whose [serve] section is used")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="serve.FIELD=VALUE")
    p.add_argument(
        "--check-precision",
        action="store_true",
        help="do not serve: print the test-split accuracy of serve.precision against fp32 as JSON",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export a model to ONNX, verified in onnxruntime against PyTorch")
    p.add_argument("ref", metavar="NAME@ALIAS|RUN_DIR")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed |onnxruntime - PyTorch| logit difference")
    p.add_argument("--tracking-uri", default=None, metavar="URI")
    p.set_defaults(func=cmd_export)


def check_port_free(host: str, port: int) -> None:
    """Fail before loading anything when the port is taken (uvicorn would only log and exit 1)."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: expected 1..65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            raise TrainwiseError(f"--host {host} --port {port}: the address {why}; choose another --port") from None


def cmd_serve(args) -> int:
    from trainwise.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.check_precision:
        return _check_precision(args.ref, cfg)
    check_port_free(args.host, args.port)
    run_server(args.ref, cfg, args.host, args.port)
    return 0


def _check_precision(ref: str, cfg) -> int:
    from trainwise.serve.quality import precision_change, run_dir_of

    print(
        json.dumps(precision_change(run_dir_of(ref, cfg.registry.tracking_uri or None), cfg.serve.precision), indent=2)
    )
    return 0


def run_server(ref: str, cfg, host: str, port: int) -> None:
    import torch
    import uvicorn

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


def cmd_export(args) -> int:
    from trainwise.serve.export import export_onnx

    result = export_onnx(args.ref, args.onnx, args.tracking_uri, args.atol)
    print(
        f"wrote {result['path']} (opset {result['opset']}); onnxruntime matches PyTorch on {result['n_checked']} "
        f"random inputs, max |diff| = {result['max_abs_diff']:.2e}"
    )
    return 0
