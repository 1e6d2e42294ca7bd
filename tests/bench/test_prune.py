"""The pruning rule on measured step times, and reading a running worker's metrics.jsonl."""

from __future__ import annotations

import json
import time

from trainwise.bench.prune import Finished, StepWatch, prune_evidence, prune_reason
from trainwise.config import load_config

BF16 = Finished("bf16-mixed, ac=none", 300.0, 200)


def test_a_variant_many_times_slower_without_a_memory_saving_is_pruned():
    ev = prune_evidence([16000.0, 15500.0], None, 500.0, 200, [BF16], 4.0)
    assert ev["slowdown"] == 31.5 and ev["timed_steps"] == 2 and ev["no_saving_over"] == "bf16-mixed, ac=none"
    reason = prune_reason(ev, "cpu")
    assert reason.startswith("32x slower than fp32 on this cpu (measured over 2 steps") and "no quality claim" in reason


def test_one_step_is_not_enough_unless_the_next_runs_past_the_threshold():
    assert prune_evidence([16000.0], None, 500.0, 200, [BF16], 4.0) is None
    assert prune_evidence([16000.0], 1500.0, 500.0, 200, [BF16], 4.0) is None  # the next step has run 1.5 s < 4 x 0.5 s: not yet
    ev = prune_evidence([16000.0], 2100.0, 500.0, 200, [BF16], 4.0)
    assert ev is not None and ev["observed_steps"] == 2 and "the next one ran past that" in prune_reason(ev, "cpu")


def test_below_the_slowdown_it_runs_on():
    assert prune_evidence([1900.0, 1950.0, 1800.0], None, 500.0, 200, [BF16], 4.0) is None  # 3.8x < 4x


def test_a_memory_saving_keeps_a_slow_variant():
    # slow (32x) but it needs 30% less memory than everything faster that finished: the user may need that
    assert prune_evidence([16000.0, 16000.0], None, 500.0, 140, [BF16, Finished("fp32", 500.0, 320)], 4.0) is None
    # within 5% of the faster variant's memory is no saving
    assert prune_evidence([16000.0, 16000.0], None, 500.0, 195, [BF16], 4.0) is not None
    # nothing faster has finished yet: no comparison, no pruning
    assert prune_evidence([16000.0, 16000.0], None, 500.0, 200, [], 4.0) is None
    # its memory is not measured yet: cannot tell
    assert prune_evidence([16000.0, 16000.0], None, 500.0, None, [BF16], 4.0) is None


def test_step_watch_reads_rows_as_they_are_written(tmp_path):
    tc = load_config(None, ["train.steps=20", "train.eval_every=5", "train.log_every=1", "train.checkpoint_every=0"]).train
    path = tmp_path / "metrics.jsonl"
    watch = StepWatch(path, tc)
    watch.poll()  # no file yet
    rows = [{"step": 1, "loss": 5.0, "step_ms": 900.0},  # warm-up: not timed
            {"step": 2, "loss": 4.0, "step_ms": 800.0, "peak_memory_bytes": 123, "peak_activation_bytes": 100},  # memory step: not timed
            {"step": 3, "loss": 3.5, "step_ms": 300.0}]
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')  # a line still being written
    watch.poll()
    assert watch.timed_ms == [300.0] and watch.memory_bytes == 123 and watch.last_step == 3
    time.sleep(0.05)
    assert watch.running_ms() >= 50  # step 4 is a plain step: its running time is a lower bound
    with open(path, "a") as f:
        f.write('ss": 3.4, "step_ms": 310.0}\n')
    watch.poll()
    assert watch.timed_ms == [300.0, 310.0] and watch.last_step == 4
    assert watch.running_ms() is None  # step 5 validates: the time since row 4 is not one step's
