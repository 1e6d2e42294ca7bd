"""A progress line on stderr: step, loss, throughput, ETA. Redrawn in place on a terminal,
printed as plain lines (about 20 per run, at least every 30 s) when stderr is a file."""

from __future__ import annotations

import sys
import time


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_steps: int, start_step: int, enabled: bool = True, unit: str = "tok", stream=None):
        self.total = total_steps
        self.start_step = start_step
        self.enabled = enabled
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last_print = 0.0
        self.every = max(1, (total_steps - start_step) // 20)

    def update(self, step: int, loss: float, rate: float, val_loss: float | None = None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        due = (
            step == self.total
            or (self.tty and now - self.last_print > 0.2)
            or (not self.tty and (step % self.every == 0 or now - self.last_print > 30))
        )
        if not due:
            return
        self.last_print = now
        done = step - self.start_step
        eta = (now - self.t0) / done * (self.total - step) if done else 0
        val = f" val {val_loss:.4f}" if val_loss is not None else ""
        line = (
            f"step {step}/{self.total} loss {loss:.4f}{val} {rate:,.0f} {self.unit}/s elapsed "
            f"{_fmt_duration(now - self.t0)} ETA {_fmt_duration(eta)}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
