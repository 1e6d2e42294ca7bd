"""`trainwise numerics CONFIG [--steps N] [--out DIR]`: per-layer precision diagnostics and the
FP8 preflight for the configured workload."""

from __future__ import annotations

from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.errors import TrainwiseError
from trainwise.numerics.analysis import analyze
from trainwise.numerics.formats import DEFAULT_FORMATS, RECIPES
from trainwise.numerics.preflight import GPU_CLASSES, preflight_text
from trainwise.rundir import write_atomic, write_json


def training_batches(cfg, workload, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `steps` micro-batches of the run's own data order (fp32, CPU)."""
    from trainwise.train.data import StepSampler

    sampler = StepSampler(
        len(workload.train), cfg.train.global_batch_size, cfg.train.micro_batch_size, 1, 0, cfg.train.seed
    )
    return [workload.train.batch(sampler.indices(step, 0)) for step in range(steps)]


def run_numerics(
    config: str, steps: int, out: str | Path, formats: list[str], recipe: str, gpu: str, overrides: list[str] = ()
) -> dict:
    if steps < 1:
        raise TrainwiseError(f"--steps = {steps}: expected at least 1 training step to measure")
    from trainwise.workloads.build import build_workload

    cfg = load_config(config, overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    workload = build_workload(cfg)
    report = analyze(
        workload.model,
        training_batches(cfg, workload, steps),
        workload.loss_fn,
        formats,
        recipe=recipe,
        gpu=gpu,
        loss_scale=cfg.precision.init_scale,
        lr=cfg.train.lr,
    )
    report["config"] = str(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "numerics.json", report)
    from trainwise.numerics.html import render_html

    write_atomic(out / "numerics.html", render_html(report))
    write_atomic(out / "preflight.txt", preflight_text(report["preflight"]) + "\n")
    return report


def _cmd_numerics(args) -> int:
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    report = run_numerics(args.config, args.steps, args.out, formats, args.recipe, args.gpu, args.set or [])
    li = report["loss_impact"]
    print(
        f"worst layers under {report['recipe']} (layers beyond fp16's range first, then by loss impact; fp32 loss {li['loss_fp32']:.4f}, "
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
    p.add_argument("config", help="TOML recipe (e.g. configs/lm-tiny.toml)")
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
    p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE", help="override a config field (repeatable)")
    p.set_defaults(func=_cmd_numerics)
