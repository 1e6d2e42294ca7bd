"""A bench row carries the CUDA allocator's peaks that the trainer measured (issue 17: the GPU
proof reports max_memory_allocated / max_memory_reserved per variant and sets the estimate beside
them). The trainer writes them into summary.json on CUDA only (trainwise/train/memory.py)."""

from __future__ import annotations

from trainwise.bench.grid import expand
from trainwise.bench.results import aggregate

INFO = {"matmul_gflops": {"fp32": 100.0, "bf16": 400.0}}
TRAINED = {
    "status": "completed",
    "median_step_ms": 10.0,
    "min_step_ms": 8.0,
    "max_step_ms": 30.0,
    "tokens_per_s": 409600.0,
    "flops_per_step": 1e9,
    "steps": 8,
    "timed_steps": 7,
    "final_val_loss": 1.0,
    "peak_memory_bytes": 3 * 2**30,
}


def test_the_row_has_the_cuda_allocator_peaks_of_the_measured_step():
    (control,) = expand([], ["precision.policy=fp32"])
    cuda = aggregate(
        control, {**TRAINED, "max_memory_allocated": 4 * 2**30, "max_memory_reserved": 5 * 2**30}, INFO, 0.0
    )
    assert (cuda["max_memory_allocated"], cuda["max_memory_reserved"]) == (4 * 2**30, 5 * 2**30)
    assert cuda["peak_memory_bytes"] == 3 * 2**30  # the tracked figure stays beside them
    cpu = aggregate(control, TRAINED, INFO, 0.0)
    assert cpu["max_memory_allocated"] is None and cpu["max_memory_reserved"] is None
