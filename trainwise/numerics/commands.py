"""`trainwise numerics CONFIG [--steps N] [--out DIR]`: per-layer precision diagnostics and the
FP8 preflight for the configured workload (the library side is trainwise.numerics.diagnose)."""

from __future__ import annotations

from pathlib import Path

from trainwise.cliargs import add_config_args
from trainwise.numerics.formats import DEFAULT_FORMATS, RECIPES
from trainwise.numerics.preflight import GPU_CLASSES, preflight_text


def cmd_numerics(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.numerics.diagnose import run_numerics

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    report = run_numerics(args.config, args.steps, args.out, formats, args.recipe, args.gpu, args.overrides)
    li = report["loss_impact"]
    print(
        f"worst layers under {report['recipe']} (layers beyond fp16's range first, then by loss impact; "
        f"fp32 loss {li['loss_fp32']:.4f}, "
        f"all FP8-eligible layers converted {li['loss_converted']:.4f}):"
    )
    print(f"  {'':4s} {'layer':30s} {'loss impact':>12s} {'matmul error':>13s}")
    for name in report["ranking"][:5]:
        r = report["layers"][name]
        print(
            f"  {r['rank']:3d}. {name:30s} {r['loss_impact']:12.2e} {r['score']:13.4f}"
            + (f"  UNSAFE: {'; '.join(r['unsafe_reasons'])}" if r["unsafe_reasons"] else "")
        )
    print(preflight_text(report["preflight"]))
    print(f"wrote {Path(args.out) / 'numerics.json'} and {Path(args.out) / 'numerics.html'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "numerics",
        help="per-layer precision diagnostics and the FP8 preflight",
        description="Run a few fp32 training steps with hooks; report each Linear/Conv layer's dynamic range, "
        "overflow/flush shares and matmul error per format, and whether FP8 pays and is safe per layer.",
    )
    add_config_args(
        p, config_help="TOML recipe (e.g. configs/lm-tiny.toml)", set_help="override a config field (repeatable)"
    )
    p.add_argument("--steps", type=int, default=3, help="fp32 training steps to measure (default 3)")
    p.add_argument(
        "--out",
        default="numerics",
        help="output directory for numerics.json, numerics.html, preflight.txt (default ./numerics)",
    )
    p.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        help=f"comma-separated formats (default {','.join(DEFAULT_FORMATS)}; also fp4-e2m1)",
    )
    p.add_argument(
        "--recipe",
        default="fp8-tensorwise",
        choices=list(RECIPES),
        help="fp8 recipe the ranking and preflight judge (default fp8-tensorwise)",
    )
    p.add_argument(
        "--gpu",
        default="h100",
        choices=[*GPU_CLASSES, "any"],
        help="GPU class for the speed verdict (default h100; 'any' = numerics only)",
    )
    p.set_defaults(func=cmd_numerics)
