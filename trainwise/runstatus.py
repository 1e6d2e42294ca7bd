"""`RunStatus`: how a training run ended, as summary.json's "status" says it.

The values are the JSON strings trainwise has always written, so old run directories still read.
Every place that asks "did the run succeed?" or "is there anything left to train?" asks here.

>>> RunStatus("halted").succeeded, RunStatus("halted").finished
(True, False)
>>> RunStatus.of("oom") is None  # a bench's own result status, not a run's
True
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    COMPLETED = "completed"  # every configured step ran
    EARLY_STOPPED = "early_stopped"  # validation stopped improving (train.early_stopping_patience)
    HALTED = "halted"  # stopped on purpose after train.halt_after_steps; resumable
    FAILED = "failed"  # a non-finite step with train.on_nonfinite = 'stop', or a failed write
    INTERRUPTED = "interrupted"  # Ctrl-C; resumable from the last checkpoint

    @property
    def succeeded(self) -> bool:
        """The run did what it was asked: `trainwise train` exits 0."""
        return self in (RunStatus.COMPLETED, RunStatus.EARLY_STOPPED, RunStatus.HALTED)

    @property
    def finished(self) -> bool:
        """Training is over: a model was saved and nothing is left to resume."""
        return self in (RunStatus.COMPLETED, RunStatus.EARLY_STOPPED)

    @classmethod
    def of(cls, value) -> RunStatus | None:
        """The status a summary names, or None for anything else (a missing or foreign status)."""
        try:
            return cls(value)
        except ValueError:
            return None
