"""`trainwise serve` and `trainwise export` verbs."""

from __future__ import annotations

import json

from trainwise.cliargs import add_config_args


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
    add_config_args(
        p,
        config="flag",
        config_help="TOML file whose [serve] section is used",
        config_metavar="FILE",
        set_help=None,
        set_metavar="serve.FIELD=VALUE",
    )
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


def cmd_serve(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.check_precision:
        # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
        from trainwise.serve.quality import precision_change, run_dir_of

        run_dir = run_dir_of(args.ref, cfg.registry.tracking_uri or None)
        print(json.dumps(precision_change(run_dir, cfg.serve.precision), indent=2))
        return 0
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.serve.server import run_server

    run_server(args.ref, cfg, args.host, args.port)
    return 0


def cmd_export(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.serve.export import export_onnx

    result = export_onnx(args.ref, args.onnx, args.tracking_uri, args.atol)
    print(
        f"wrote {result['path']} (opset {result['opset']}); onnxruntime matches PyTorch on {result['n_checked']} "
        f"random inputs, max |diff| = {result['max_abs_diff']:.2e}"
    )
    return 0
