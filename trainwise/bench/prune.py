"""Stopping a variant that cannot win, from its own measured steps (docs/bench.md, "Pruning").

The runner watches a running worker's metrics.jsonl (the trainer appends a row per logged step:
its `step_ms`, and the memory measurement at the 2nd step). Each observed step is compared with
the fp32 control's *same kind* of step: the warm-up step (step 1) with the control's warm-up step,
the memory-measured step with the control's memory-measured step, a plain step with the control's
median plain step. A variant is pruned when

- at least PRUNE_MIN_STEPS steps were observed, the median of their ratios to the control is at
  least `bench.prune_slowdown`, and so are the last PRUNE_MIN_STEPS of them (a slow first step
  alone, such as torch.compile's, is not slowness), and
- it saves no memory (less than MEMORY_SAVING_MIN) over a variant that already finished and is faster.

So a hopeless variant is stopped as soon as its memory is known, at the end of its 2nd step: on a
CPU without fp16 units, where one fp16 step takes 15-18 s, that saves the timed steps after it.
A step still running when the rule is checked counts as a step at least as long as it has run,
when nothing else happens between the two rows (a validation, a checkpoint).

>>> control = ControlSteps(warmup_ms=600.0, memory_ms=700.0, median_ms=500.0)
>>> finished = [Finished("bf16-mixed", 300.0, 100)]
>>> evidence = prune_evidence(StepTimes(19000.0, 21000.0, []), None, control, 100, finished, 4.0)
>>> round(evidence["slowdown"]), evidence["observed_steps"], evidence["no_saving_over"]
(31, 2, 'bf16-mixed')
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
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


@dataclass
class StepTimes:
    """A run's observed steps by kind (milliseconds)."""

    warmup_ms: float | None = None  # step 1 of a fresh run
    memory_ms: float | None = None  # the step measured under the memory tracker
    timed_ms: list[float] = field(default_factory=list)  # plain steps

    def take(self, row: dict) -> None:
        if "step_ms" not in row:
            return
        if "peak_memory_bytes" in row:
            self.memory_ms = row["step_ms"]
        elif row.get("step") == 1:
            self.warmup_ms = row["step_ms"]
        else:
            self.timed_ms.append(row["step_ms"])


@dataclass
class ControlSteps:
    """The fp32 control's steps, each kind's reference for the same kind of step of a variant."""

    warmup_ms: float | None
    memory_ms: float | None
    median_ms: float

    @classmethod
    def from_metrics(cls, path: Path, median_ms: float) -> "ControlSteps":
        steps = StepTimes()
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    steps.take(json.loads(line))
        return cls(steps.warmup_ms, steps.memory_ms, median_ms)


def is_timed_row(row: dict) -> bool:
    """A row whose step_ms is a plain training step: not the warm-up step (step 1 of a fresh run)
    and not a step measured under the memory tracker (the row that carries peak_memory_bytes)."""
    return "step_ms" in row and row.get("step", 0) > 1 and "peak_memory_bytes" not in row


def step_ratios(steps: StepTimes, running_ms: float | None, control: ControlSteps, threshold: float) -> list[float]:
    """Each observed step over the control's step of the same kind, in order; the step in progress
    counts (as a plain step) only once it has run past `threshold` x the control's median step."""
    out = []
    if steps.warmup_ms is not None and control.warmup_ms:
        out.append(steps.warmup_ms / control.warmup_ms)
    if steps.memory_ms is not None and control.memory_ms:
        out.append(steps.memory_ms / control.memory_ms)
    out += [ms / control.median_ms for ms in steps.timed_ms]
    if running_ms is not None and running_ms >= threshold * control.median_ms:
        out.append(running_ms / control.median_ms)
    return out


def prune_evidence(
    steps: StepTimes,
    running_ms: float | None,
    control: ControlSteps,
    memory_bytes: int | None,
    finished: list[Finished],
    slowdown: float,
    min_steps: int = PRUNE_MIN_STEPS,
) -> dict | None:
    """The evidence for stopping a variant now, or None while it may still be worth finishing.

    running_ms: how long the step in progress has run (None when that is not a clean lower bound
    of one step); min_steps: observations needed (1 when the time budget has ended the run anyway)."""
    if not control.median_ms or memory_bytes is None:
        return None  # without its memory we cannot tell whether its slowness buys a saving
    ratios = step_ratios(steps, running_ms, control, slowdown)
    if len(ratios) < min_steps or median(ratios) < slowdown or min(ratios[-min_steps:]) < slowdown:
        return None
    measured = median(ratios)
    equivalent_ms = measured * control.median_ms  # its plain step, as the control's step scaled by its slowdown
    faster = [
        f
        for f in finished
        if f.median_step_ms < equivalent_ms
        and f.peak_memory_bytes is not None
        and memory_bytes >= f.peak_memory_bytes * (1 - MEMORY_SAVING_MIN)
    ]
    if not faster:
        return None  # slow, but it saves memory over everything faster: the user may need that
    ref = min(faster, key=lambda f: f.median_step_ms)
    kinds = ["warm-up"] * (steps.warmup_ms is not None and bool(control.warmup_ms)) + ["memory-measured"] * (
        steps.memory_ms is not None and bool(control.memory_ms)
    )
    return {
        "slowdown": measured,
        "median_step_ms": equivalent_ms,
        "observed_steps": len(ratios),
        "step_ratios": ratios,
        "step_kinds": kinds + ["plain"] * (len(ratios) - len(kinds)),
        "running_step": running_ms is not None and len(ratios) > len(kinds) + len(steps.timed_ms),
        "control_median_step_ms": control.median_ms,
        "prune_slowdown": slowdown,
        "peak_memory_bytes": memory_bytes,
        "no_saving_over": ref.label,
        "its_peak_memory_bytes": ref.peak_memory_bytes,
        "its_median_step_ms": ref.median_step_ms,
    }


def prune_reason(evidence: dict, device: str) -> str:
    """'31x slower than fp32 on this cpu (measured over 2 steps: ...); no memory saving over bf16-mixed ...'."""
    n = evidence["observed_steps"]
    kinds = evidence.get("step_kinds") or []
    named = [k for k in dict.fromkeys(kinds) if k != "plain"]
    how = (
        f"each against the control's same step: the {' and '.join(named)} step{'s' if len(named) > 1 else ''}"
        if named
        else "against the control's median step"
    )
    over = f"measured over {n} step{'s' if n != 1 else ''}, {how}" + (
        "; the last one was still running when it was stopped" if evidence.get("running_step") else ""
    )
    share = (
        evidence["peak_memory_bytes"] / evidence["its_peak_memory_bytes"] if evidence["its_peak_memory_bytes"] else 1.0
    )
    x = evidence["slowdown"]
    return (f"{x:.0f}x" if x >= 10 else f"{x:.1f}x") + (
        f" slower than fp32 on this {device} ({over}; bench.prune_slowdown = {evidence['prune_slowdown']:g}), and no "
        f"memory saving over the faster {evidence['no_saving_over']} (peak memory {share:.0%} of its): no quality "
        "claim is made for it"
    )


class StepWatch:
    """Reads a running worker's metrics.jsonl as it grows (holds the read position between polls)."""

    def __init__(self, metrics_path: Path, tc):
        self.path = metrics_path
        self.tc = tc  # the variant's train config: which steps validate or checkpoint
        self.offset = 0
        self.steps = StepTimes()
        self.memory_bytes: int | None = None
        self.last_step = 0
        self.last_seen = time.perf_counter()

    @property
    def timed_ms(self) -> list[float]:
        return self.steps.timed_ms

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
        self.steps.take(row)

    def running_ms(self) -> float | None:
        """How long the step after the last logged one has run: a lower bound of that step's time
        when every step is logged and nothing but the step happens before its row is written."""
        tc, nxt = self.tc, self.last_step + 1
        validates = (tc.eval_every and nxt % tc.eval_every == 0) or nxt >= tc.steps
        checkpointed = tc.checkpoint_every and self.last_step % tc.checkpoint_every == 0
        if tc.log_every != 1 or self.last_step < 2 or validates or checkpointed:
            return None
        return (time.perf_counter() - self.last_seen) * 1e3
