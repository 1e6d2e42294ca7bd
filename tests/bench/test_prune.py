"""The pruning rule on measured step times (each against the control's same kind of step), and
reading a running worker's metrics.jsonl."""

from __future__ import annotations

import json
import time

from trainwise.bench.prune import ControlSteps, Finished, StepTimes, StepWatch, prune_evidence, prune_reason
from trainwise.config import load_config

BF16 = Finished("bf16-mixed, ac=none", 300.0, 200)
CONTROL = ControlSteps(warmup_ms=600.0, memory_ms=700.0, median_ms=500.0)


def test_a_variant_many_times_slower_without_a_memory_saving_is_pruned_after_its_second_step():
    # fp16 on a CPU without fp16 units: its warm-up and memory-measured steps take ~30x the control's same steps
    ev = prune_evidence(StepTimes(18000.0, 21000.0, []), None, CONTROL, 200, [BF16], 4.0)
    assert ev["step_ratios"] == [30.0, 30.0] and ev["slowdown"] == 30.0 and ev["median_step_ms"] == 15000.0
    assert ev["observed_steps"] == 2 and ev["no_saving_over"] == "bf16-mixed, ac=none"
    reason = prune_reason(ev, "cpu")
    assert (
        reason.startswith(
            "30x slower than fp32 on this cpu (measured over 2 steps, each against the control's same step: "
            "the warm-up and memory-measured steps"
        )
        and "no quality claim" in reason
    )
    # with plain steps too, the median of all the ratios
    ev = prune_evidence(StepTimes(18000.0, 21000.0, [16000.0, 15500.0]), None, CONTROL, 200, [BF16], 4.0)
    assert ev["slowdown"] == 30.5 and ev["step_kinds"] == ["warm-up", "memory-measured", "plain", "plain"]


def test_one_step_is_not_enough_unless_the_next_runs_past_the_threshold():
    assert prune_evidence(StepTimes(None, 21000.0, []), None, CONTROL, 200, [BF16], 4.0) is None
    assert (
        prune_evidence(StepTimes(None, 21000.0, []), 1500.0, CONTROL, 200, [BF16], 4.0) is None
    )  # 1.5 s < 4 x 0.5 s: not yet
    ev = prune_evidence(StepTimes(None, 21000.0, []), 2100.0, CONTROL, 200, [BF16], 4.0)
    assert ev is not None and ev["observed_steps"] == 2 and "the last one was still running" in prune_reason(ev, "cpu")


def test_a_slow_first_step_alone_is_not_slowness():
    # torch.compile's first step (or a burst of other work) takes 60x; the memory-measured step is the control's: runs
    # on
    assert prune_evidence(StepTimes(36000.0, 700.0, []), None, CONTROL, 200, [BF16], 4.0) is None
    # and the last two observations must both be slow, not just the median
    assert prune_evidence(StepTimes(36000.0, 21000.0, [600.0]), None, CONTROL, 200, [BF16], 4.0) is None


def test_below_the_slowdown_it_runs_on():
    assert (
        prune_evidence(StepTimes(2200.0, 2600.0, [1900.0, 1950.0, 1800.0]), None, CONTROL, 200, [BF16], 4.0) is None
    )  # 3.7-3.9x < 4x


def test_a_memory_saving_keeps_a_slow_variant():
    slow = StepTimes(18000.0, 21000.0, [16000.0])
    # slow (30x) but it needs 30% less memory than everything faster that finished: the user may need that
    assert prune_evidence(slow, None, CONTROL, 140, [BF16, Finished("fp32", 500.0, 320)], 4.0) is None
    # within 5% of the faster variant's memory is no saving
    assert prune_evidence(slow, None, CONTROL, 195, [BF16], 4.0) is not None
    # nothing faster has finished yet: no comparison, no pruning
    assert prune_evidence(slow, None, CONTROL, 200, [], 4.0) is None
    # its memory is not measured yet: cannot tell
    assert prune_evidence(slow, None, CONTROL, None, [BF16], 4.0) is None


def test_control_steps_are_read_by_kind(tmp_path):
    rows = [
        {"step": 1, "loss": 5.0, "step_ms": 600.0},
        {"step": 2, "loss": 4.0, "step_ms": 700.0, "peak_memory_bytes": 1},
        {"step": 3, "loss": 3.0, "step_ms": 480.0},
        {"step": 3, "val_loss": 3.1},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ControlSteps.from_metrics(path, 500.0) == ControlSteps(600.0, 700.0, 500.0)


def test_step_watch_reads_rows_as_they_are_written(tmp_path):
    tc = load_config(
        None, ["train.steps=20", "train.eval_every=5", "train.log_every=1", "train.checkpoint_every=0"]
    ).train
    path = tmp_path / "metrics.jsonl"
    watch = StepWatch(path, tc)
    watch.poll()  # no file yet
    rows = [
        {"step": 1, "loss": 5.0, "step_ms": 900.0},  # warm-up: not timed
        {
            "step": 2,
            "loss": 4.0,
            "step_ms": 800.0,
            "peak_memory_bytes": 123,
            "peak_activation_bytes": 100,
        },  # memory step: not timed
        {"step": 3, "loss": 3.5, "step_ms": 300.0},
    ]
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "lo')  # a line still being written
    watch.poll()
    assert watch.timed_ms == [300.0] and watch.memory_bytes == 123 and watch.last_step == 3
    assert watch.steps.warmup_ms == 900.0 and watch.steps.memory_ms == 800.0
    time.sleep(0.05)
    assert watch.running_ms() >= 50  # step 4 is a plain step: its running time is a lower bound
    with open(path, "a") as f:
        f.write('ss": 3.4, "step_ms": 310.0}\n')
    watch.poll()
    assert watch.timed_ms == [300.0, 310.0] and watch.last_step == 4
    assert watch.running_ms() is None  # step 5 validates: the time since row 4 is not one step's
