"""Stopping a variant that cannot win, from its own measured steps (docs/bench.md, "Pruning").

The runner watches a running worker's metrics.jsonl (the trainer appends a row per logged step:
its `step_ms`, and the memory measurement at the 2nd step). A variant is pruned when

- at least PRUNE_MIN_STEPS timed steps (not the warm-up step, not the memory-measurement step)
  have a median of at least `bench.prune_slowdown` times the fp32 control's median step, and
- it saves no memory (less than MEMORY_SAVING_MIN) over a variant that already finished and is faster.

A step still running when the rule is checked counts as a step at least as long as it has run,
but only when nothing else happens between the two rows (a validation, a checkpoint): so a
hopeless variant is stopped while its second timed step runs, not after it.

>>> evidence = prune_evidence([16000.0], 2000.0, 500.0, 100, [Finished("bf16-mixed", 300.0, 100)], 4.0)
>>> round(evidence["slowdown"]), evidence["observed_steps"], evidence["no_saving_over"]
(32, 2, 'bf16-mixed')
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

PRUNE_MIN_STEPS = 2  # one step can be a hiccup of a shared machine; two that agree are a measurement
MEMORY_SAVING_MIN = 0.05  # a variant that saves less peak memory than this share brings nothing for its slowness


@dataclass
class Finished:
    """A variant that finished before: what a slow variant would have to beat on memory."""

    label: str
    median_step_ms: float
    peak_memory_bytes: int | None


def is_timed_row(row: dict) -> bool:
    """A row whose step_ms is a plain training step: not the warm-up step (step 1 of a fresh run)
    and not a step measured under the memory tracker (the row that carries peak_memory_bytes)."""
    return "step_ms" in row and row.get("step", 0) > 1 and "peak_memory_bytes" not in row


def prune_evidence(timed_ms: list[float], running_ms: float | None, control_ms: float, memory_bytes: int | None,
                   finished: list[Finished], slowdown: float, min_steps: int = PRUNE_MIN_STEPS) -> dict | None:
    """The evidence for stopping a variant now, or None while it may still be worth finishing.

    timed_ms: its completed timed steps; running_ms: how long the step in progress has run (None
    when that is not a clean lower bound of one step); control_ms: the control's median step;
    min_steps: observations needed (1 when the time budget has ended the run anyway)."""
    if not timed_ms or not control_ms or memory_bytes is None:
        return None  # without its memory we cannot tell whether its slowness buys a saving
    threshold = slowdown * control_ms
    observed = list(timed_ms) + ([running_ms] if running_ms is not None and running_ms >= threshold else [])
    if len(observed) < min_steps or median(observed) < threshold:
        return None
    measured_ms = median(timed_ms)
    faster = [f for f in finished if f.median_step_ms < measured_ms and f.peak_memory_bytes is not None
              and memory_bytes >= f.peak_memory_bytes * (1 - MEMORY_SAVING_MIN)]
    if not faster:
        return None  # slow, but it saves memory over everything faster: the user may need that
    ref = min(faster, key=lambda f: f.median_step_ms)
    return {"slowdown": measured_ms / control_ms, "median_step_ms": measured_ms, "timed_steps": len(timed_ms), "observed_steps": len(observed),
            "control_median_step_ms": control_ms, "prune_slowdown": slowdown, "peak_memory_bytes": memory_bytes,
            "no_saving_over": ref.label, "its_peak_memory_bytes": ref.peak_memory_bytes, "its_median_step_ms": ref.median_step_ms}


def prune_reason(evidence: dict, device: str) -> str:
    """'32x slower than fp32 on this cpu (measured over 2 steps); no memory saving over bf16-mixed'."""
    n, extra = evidence["timed_steps"], evidence["observed_steps"] - evidence["timed_steps"]
    over = f"measured over {n} step{'s' if n != 1 else ''}" + (", and the next one ran past that before it was stopped" if extra else "")
    share = evidence["peak_memory_bytes"] / evidence["its_peak_memory_bytes"] if evidence["its_peak_memory_bytes"] else 1.0
    x = evidence["slowdown"]
    return (f"{x:.0f}x" if x >= 10 else f"{x:.1f}x") + (f" slower than fp32 on this {device} ({over}; bench.prune_slowdown = {evidence['prune_slowdown']:g}), "
            f"and no memory saving over the faster {evidence['no_saving_over']} (peak memory {share:.0%} of its): no quality claim is made for it")


class StepWatch:
    """Reads a running worker's metrics.jsonl as it grows (holds the read position between polls)."""

    def __init__(self, metrics_path: Path, tc):
        self.path = metrics_path
        self.tc = tc  # the variant's train config: which steps validate or checkpoint
        self.offset = 0
        self.timed_ms: list[float] = []
        self.memory_bytes: int | None = None
        self.last_step = 0
        self.last_seen = time.perf_counter()

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line being written is read at the next poll
        if not end:
            return
        self.offset += end
        for line in chunk[:end].decode().splitlines():
            if line.strip():
                self._take(json.loads(line))
        self.last_seen = time.perf_counter()

    def _take(self, row: dict) -> None:
        self.last_step = row.get("step", self.last_step)
        if "peak_memory_bytes" in row:
            self.memory_bytes = row["peak_memory_bytes"]
        if is_timed_row(row):
            self.timed_ms.append(row["step_ms"])

    def running_ms(self) -> float | None:
        """How long the step after the last logged one has run: a lower bound of that step's time
        when every step is logged and nothing but the step happens before its row is written."""
        tc, nxt = self.tc, self.last_step + 1
        validates = (tc.eval_every and nxt % tc.eval_every == 0) or nxt >= tc.steps
        checkpointed = tc.checkpoint_every and self.last_step % tc.checkpoint_every == 0
        if tc.log_every != 1 or self.last_step < 2 or validates or checkpointed:
            return None
        return (time.perf_counter() - self.last_seen) * 1e3
