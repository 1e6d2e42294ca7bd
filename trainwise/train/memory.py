"""Honest memory measurement: tensors tracked by storage, not process RSS.

One training step is run under torch's MemTracker (a TorchDispatchMode that follows every tensor
storage and attributes it to parameters, gradients, optimizer state, activations or temporaries).
Activations are counted where they are really held, so checkpointed and selectively checkpointed
blocks show their true saving. On CUDA the allocator's own peaks are reported as well.

Checked, not assumed (tests/train/test_memory.py): under selective AC the saved matmul outputs
live in the checkpoint's own storage, and MemTracker still counts them as activations, because it
follows storages created during forward wherever they are kept; the activation peak orders
none > selective > full, and selective's saving matches the bytes of the recomputed ops.
The `peak` snapshot is the breakdown at the moment of the total peak, so the parts add up.
"""

from __future__ import annotations

import contextlib

import torch


def tracker_peak(tracker, device: torch.device) -> dict:
    """peak_activation_bytes, peak_memory_bytes and the breakdown from a MemTracker that ran a step."""
    peak = tracker.get_tracker_snapshot("peak")
    per_dev = peak.get(device) or next(iter(peak.values()), {})
    by = {str(k).split(".")[-1]: int(v) for k, v in per_dev.items()}
    return {
        "peak_activation_bytes": by.get("ACT", 0),
        "peak_memory_bytes": by.get("Total", 0),
        "memory_breakdown": {
            "parameters": by.get("PARAM", 0),
            "gradients": by.get("GRAD", 0),
            "optimizer_state": by.get("OPT", 0),
            "activations": by.get("ACT", 0),
            "temporaries": by.get("TEMP", 0),
            "buffers": by.get("BUFFER", 0),
            "other": by.get("OTH", 0),
        },
    }


class _StepMemory:
    def __init__(self):
        self.tracker = None
        self.device = None
        self.error = None

    def result(self) -> dict:
        out: dict = {}
        if self.tracker is not None and self.error is None:
            out.update(tracker_peak(self.tracker, self.device))
        else:
            out["peak_activation_bytes"] = None
            out["peak_memory_bytes"] = None
            out["memory_measurement_note"] = self.error or "not measured"
        if self.device is not None and self.device.type == "cuda":
            out["max_memory_allocated"] = torch.cuda.max_memory_allocated(self.device)
            out["max_memory_reserved"] = torch.cuda.max_memory_reserved(self.device)
        return out


@contextlib.contextmanager
def measure_step_memory(model: torch.nn.Module, optimizer, device: torch.device, enabled: bool = True):
    """Measure the memory of the step run inside the block; a no-op when disabled."""
    mem = _StepMemory()
    if not enabled:
        yield mem
        return
    mem.device = device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:  # MemTracker takes ~1 s to import; only a measured step needs it
        # lazy: torch's private mem_tracker is only needed when step memory is measured
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as e:
        mem.error = f"torch's MemTracker is unavailable: {e}"
        yield mem
        return
    if any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules()):
        mem.error = "storage tracking does not see inside compiled blocks; measure with train.compile = false"
        yield mem
        return
    tracker = MemTracker()
    tracker.track_external(model, optimizer)
    mem.tracker = tracker

    def new_micro_batch(module, args):
        # MemTracker refuses a second forward of the same module in one tracked region (gradient
        # accumulation); its per-module stats are cleared, its global peak is kept. Registered
        # before the tracker's own global hooks, so it runs first.
        if module is model and model in tracker.memory_tracking:
            tracker.reset_mod_stats()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(new_micro_batch)
    try:
        with tracker:
            yield mem
    finally:
        handle.remove()
