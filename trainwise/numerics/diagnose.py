"""Per-layer precision diagnostics of a config's workload: a few fp32 training steps with hooks,
written as numerics.json, numerics.html and preflight.txt (the `trainwise numerics` verb)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.errors import TrainwiseError
from trainwise.numerics.analysis import analyze
from trainwise.numerics.html import render_html
from trainwise.numerics.preflight import preflight_text
from trainwise.rundir import write_atomic, write_json
from trainwise.train.data import StepSampler
from trainwise.workloads.build import build_workload


def training_batches(cfg, workload, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `steps` micro-batches of the run's own data order (fp32, CPU)."""

    sampler = StepSampler(
        len(workload.train), cfg.train.global_batch_size, cfg.train.micro_batch_size, 1, 0, cfg.train.seed
    )
    return [workload.train.batch(sampler.indices(step, 0)) for step in range(steps)]


def run_numerics(
    config: str, steps: int, out: str | Path, formats: list[str], recipe: str, gpu: str, overrides: list[str] = ()
) -> dict:
    if steps < 1:
        raise TrainwiseError(f"--steps = {steps}: expected at least 1 training step to measure")

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

    write_atomic(out / "numerics.html", render_html(report))
    write_atomic(out / "preflight.txt", preflight_text(report["preflight"]) + "\n")
    return report
