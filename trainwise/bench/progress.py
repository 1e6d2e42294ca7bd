"""One progress line for a whole bench: which run, its step, elapsed time and the ETA of the whole
bench (not of one variant). Redrawn in place on a terminal; printed at most every 30 s otherwise."""

from __future__ import annotations

import sys
import time

from trainwise.train.progress import _fmt_duration


class BenchProgress:
    def __init__(self, n_runs: int, enabled: bool = True, tail_s: float = 0.0, stream=None):
        self.n_runs = n_runs
        self.enabled = enabled
        self.tail_s = tail_s  # what follows the runs: quality comparison, timing phase, report
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.last_print = 0.0
        self.done_actual_s = 0.0
        self.done_predicted_s = 0.0
        self.done_runs = 0
        self.run_index, self.label, self.steps, self.step = 0, "", 0, 0
        self.run_t0 = self.t0
        self.run_predicted_s: float | None = None
        self.remaining_predicted_s: float | None = None

    def start_run(
        self, index: int, label: str, steps: int, predicted_s: float | None, remaining_predicted_s: float | None
    ) -> None:
        """`remaining_predicted_s`: predicted seconds of the runs after this one (None when unknown)."""
        self.run_index, self.label, self.steps, self.step = index, label, steps, 0
        self.run_t0, self.run_predicted_s, self.remaining_predicted_s = (
            time.perf_counter(),
            predicted_s,
            remaining_predicted_s,
        )
        self._show(force=self.tty)

    def update(self, step: int) -> None:
        self.step = step
        self._show()

    def end_run(self, skipped: bool = False) -> None:
        if not skipped and self.run_predicted_s:
            self.done_actual_s += time.perf_counter() - self.run_t0
            self.done_predicted_s += self.run_predicted_s
        self.done_runs += 1

    def eta_s(self) -> float | None:
        """Seconds left for the whole bench: the predictions of what is left, scaled by how the
        finished runs compared with their predictions on this machine now."""
        if self.run_predicted_s is None or self.remaining_predicted_s is None:
            return None
        scale = self.done_actual_s / self.done_predicted_s if self.done_predicted_s else 1.0
        current = max(0.0, self.run_predicted_s * scale - (time.perf_counter() - self.run_t0))
        return current + self.remaining_predicted_s * scale + self.tail_s

    def line(self) -> str:
        eta = self.eta_s()
        step = f" step {self.step}/{self.steps}" if self.steps else ""
        return (
            f"bench: run {self.run_index}/{self.n_runs} {self.label}{step} | elapsed "
            f"{_fmt_duration(time.perf_counter() - self.t0)} | ETA {_fmt_duration(eta) if eta is not None else '--'} "
            "for the whole bench"
        )

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last_print < (0.5 if self.tty else 30.0):
            return
        self.last_print = now
        if self.tty:
            self.stream.write("\r" + self.line().ljust(110))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the redrawn line before other output is printed (a terminal only)."""
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
