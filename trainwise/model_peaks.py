"""Peak matmul throughput of the configured model's own GEMM shapes: what `trainwise info --config`
adds to the square-matrix probe of trainwise.env.

Apart from env.py because it builds the configured workload (trainwise.workloads.build), and
the training code builds on env.py: env must not import it back.
"""

from __future__ import annotations

import torch

from trainwise.env import (
    PEAK_KINDS,
    collect_info,
    gemm_flops,
    kind_runs,
    measure_gemm_gflops,
    pick_device,
    record_gemm_shapes,
)
from trainwise.workloads.base import build_model_from_spec
from trainwise.workloads.build import build_workload

MAX_MODEL_PROBE_BUDGETS = 20  # `info --config` skips a kind whose model-shape probe would outlast this many budgets


def model_gemm_shapes(workload, micro_batch_size: int, device: torch.device) -> list[tuple]:
    """The matmuls of one forward + backward of a fresh fp32 copy of the workload's model on one
    micro-batch, on `device` (`record_gemm_shapes`)."""
    model = build_model_from_spec(workload.spec).to(device)
    x, y = (t.to(device) for t in workload.train.batch(torch.arange(min(micro_batch_size, len(workload.train)))))
    return record_gemm_shapes(lambda: workload.loss_fn(model(x), y).backward())


def measure_model_peaks(
    cfg,
    device: torch.device,
    square_gflops: dict | None = None,
    kinds: tuple[str, ...] = PEAK_KINDS,
    seconds: float = 0.5,
) -> dict:
    """Peak GFLOP/s of the configured model's own matmul shapes in each matmul kind: what
    `trainwise info --config` adds to the square-matrix probe. A kind that does not run on this
    device (tf32 off CUDA; fp8 where torch._scaled_mm is missing) is None, and so is one whose
    single pass over the distinct shapes would outlast MAX_MODEL_PROBE_BUDGETS x `seconds` at its
    square-probe rate (`square_gflops`; fp16 on most CPUs), with the reason in `not_measured`."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    shapes = model_gemm_shapes(build_workload(cfg), cfg.train.micro_batch_size, device)
    pass_gflop = sum(gemm_flops(op, a, b) for op, a, b, _, _ in set(shapes)) / 1e9
    gflops, skipped = {}, {}
    for kind in kinds:
        rate = (square_gflops or {}).get(kind)
        if not kind_runs(kind, device):
            skipped[kind] = f"{kind} is a CUDA matmul mode"
        elif rate and pass_gflop / rate > MAX_MODEL_PROBE_BUDGETS * seconds:
            skipped[kind] = (
                f"one call of each shape would take ~{pass_gflop / rate:.0f} s at the square probe's {rate:g} GFLOP/s"
            )
        else:
            try:
                gflops[kind] = round(measure_gemm_gflops(shapes, kind, device, seconds), 1)
            except (RuntimeError, NotImplementedError) as e:  # fp8 without torch._scaled_mm on this device
                skipped[kind] = f"{type(e).__name__}: {str(e)[:200]}"
        gflops.setdefault(kind, None)
    return {
        "micro_batch_size": cfg.train.micro_batch_size,
        "gemm_calls": len(shapes),
        "distinct_shapes": len(set(shapes)),
        "shapes": [list(s[:3]) for s in sorted(set(shapes))],
        "gflops": gflops,
        "not_measured": skipped,
        "method": (
            "each distinct (op, a, b) of one forward + backward timed alone, weighted by how often the model runs "
            "it; fp8: Linear GEMMs through torch._scaled_mm, batched and unaligned ones in bf16"
        ),
    }


def device_report(device_name: str, refresh: bool = False, cfg=None, config_path: str | None = None) -> dict:
    """`trainwise info`: collect_info for `device_name` ("auto", "cpu", "cuda"); with a config, also
    the peak on its own matmul shapes ("model_gemm"), measured under the threads it trains with."""
    device = pick_device(device_name)
    if cfg is not None and cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)  # both probes under the threads the recipe trains with
    info = collect_info(device, refresh=refresh)
    if cfg is not None:
        info["model_gemm"] = {"config": config_path, **measure_model_peaks(cfg, device, info["matmul_gflops"])}
    return info
