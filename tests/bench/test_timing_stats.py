"""The timing phase's logic on injected step times and loads (no clock is read, nothing is timed):
the interleaving order, the paired-ratio statistics against the binomial reference, the load
rule that declares timings unreliable, and the deadline."""

from __future__ import annotations

import random
from statistics import median

import pytest
from scipy.stats import binom

from trainwise.bench.grid import expand
from trainwise.bench.timing import TimingProcessError, drive_rounds, summarize
from trainwise.bench.timing_stats import (
    MIN_ROUNDS,
    cpu_times,
    load_row,
    machine_verdict,
    median_ci95,
    ratio_summary,
    round_ratios,
)

QUIET = {"loadavg": 2.0, "cpu_times": (0, 1000)}


def quiet_sample():
    return dict(QUIET)


def test_rounds_are_interleaved_after_untimed_warmups():
    calls = []

    def run(key, steps, timed):
        calls.append((key, steps, timed))
        return [1.0] * steps

    times, loads, failed = drive_rounds(
        ["A", "B", "C"], run, rounds=3, steps_per_round=2, warmup_steps=4, sample=quiet_sample, cores=2
    )
    assert calls[:3] == [("A", 4, False), ("B", 4, False), ("C", 4, False)]
    assert calls[3:] == [(k, 2, True) for _ in range(3) for k in "ABC"]
    assert {k: len(v) for k, v in times.items()} == {"A": 3, "B": 3, "C": 3} and len(loads) == 3 and not failed


def test_deadline_stops_after_the_current_round():
    now = [0.0]  # a fake clock that advances one unit per step run

    def run(key, steps, timed):
        now[0] += steps
        return [1.0] * steps

    # warm-ups end at t=2; rounds start at t=2, 4, 6; the deadline t=7 falls inside the third, which finishes
    times, loads, _ = drive_rounds(
        ["A", "B"],
        run,
        rounds=10,
        steps_per_round=1,
        warmup_steps=1,
        deadline_s=7,
        sample=quiet_sample,
        cores=2,
        clock=lambda: now[0],
        log=lambda *_: None,
    )
    assert len(loads) == 3 and all(len(v) == 3 for v in times.values()) and now[0] == 8


def test_a_process_that_dies_leaves_the_others_timed():
    timed_calls = {"A": 0, "B": 0, "C": 0}

    def run(key, steps, timed):
        timed_calls[key] += timed
        if key == "B" and timed_calls[key] == 2:
            raise TimingProcessError("the timing process killed by signal 9")
        return [2.0] * steps

    times, _, failed = drive_rounds(
        ["A", "B", "C"], run, rounds=4, steps_per_round=1, warmup_steps=1, sample=quiet_sample, cores=2
    )
    assert times["B"] == [[2.0], None, None, None] and "signal 9" in failed["B"]
    assert all(r == [2.0] for r in times["A"] + times["C"])


def binomial_interval(values: list[float]) -> tuple[float, float]:
    """Reference: the largest k with P(Binomial(n, 1/2) < k) <= 2.5% gives [x_(k), x_(n-k+1)]."""
    x, n = sorted(values), len(values)
    k = max(j for j in range(1, n // 2 + 1) if binom.cdf(j - 1, n, 0.5) <= 0.025)
    return x[k - 1], x[n - k]


@pytest.mark.parametrize("n", [6, 7, 10, 15, 31])
def test_median_interval_is_the_order_statistics_interval(n):
    rng = random.Random(n)
    values = [rng.lognormvariate(0, 0.3) for _ in range(n)]
    assert median_ci95(values) == pytest.approx(binomial_interval(values))


def test_too_few_rounds_give_no_interval_and_no_quoted_ratio():
    assert median_ci95([1.0, 1.1, 0.9, 1.0, 1.05]) == (None, None)
    s = ratio_summary([0.5, 0.5, 0.51, 0.49, 0.5], None, 0.1, "ratio")
    assert not s["reliable"] and f"at least {MIN_ROUNDS}" in s["note"]


def test_pairing_cancels_a_drifting_machine():
    # the machine slows by up to 3x from round to round; the variant is always half the control
    drift = [1.0, 3.0, 1.2, 2.5, 1.0, 2.8, 1.1, 3.0, 1.3, 2.0]
    control = [[100 * d, 101 * d] for d in drift]
    variant = [[50 * d, 50.5 * d] for d in drift]
    variant[3] = None  # a round the variant missed is left out, not paired with another round
    ratios = round_ratios(variant, control)
    assert ratios == pytest.approx([0.5] * 9)
    s = ratio_summary(ratios, None, 0.1, "ratio")
    assert (
        s["reliable"]
        and s["median"] == pytest.approx(0.5)
        and s["ci95"] == pytest.approx([0.5, 0.5])
        and s["n_rounds"] == 9
    )
    # unpaired, a drift between the two variants' runs alone would move the figure: the 3x-slower rounds of one against
    # the other's quiet ones
    assert median(median(r) for r in variant if r) / median(median(r) for r in control) != pytest.approx(0.5, rel=0.05)


def test_a_wide_interval_is_not_quoted():
    ratios = [0.5, 1.6, 0.7, 1.3, 0.9, 1.1, 0.6, 1.5, 1.0, 0.8]
    s = ratio_summary(ratios, None, 0.10, "ratio")
    assert not s["reliable"] and "bench.max_ratio_ci" in s["note"] and s["ci95"][0] < 0.9


def loads(loadavg: float, cores: int, steal: float | None = 0.0, n: int = 10) -> list[dict]:
    return [
        {
            "round": r,
            "loadavg_per_core_before": loadavg / cores,
            "loadavg_per_core_after": loadavg / cores,
            "steal_share": steal,
        }
        for r in range(n)
    ]


def test_a_busy_machine_makes_timings_unreliable():
    reason = machine_verdict(loads(4.8, 2), own_threads=1, cores=2, max_load_per_core=1.0)
    assert reason.startswith("timings unreliable: load 4.8 on 2 cores")
    # the timed process's own threads are not "other load": 2 threads busy on 2 cores is a quiet machine
    assert machine_verdict(loads(2.1, 2), own_threads=2, cores=2, max_load_per_core=1.0) is None
    assert machine_verdict(loads(1.0, 2, steal=0.3), own_threads=2, cores=2, max_load_per_core=1.0).endswith(
        "took 30% of the CPU time (steal) during the timing rounds"
    )
    assert "3 timing round(s) ran" in machine_verdict(loads(0.5, 2, n=3), own_threads=1, cores=2, max_load_per_core=1.0)
    s = ratio_summary([0.5] * 10, machine_verdict(loads(4.8, 2), 1, 2, 1.0), 0.1, "ratio")
    assert not s["reliable"] and "load 4.8 on 2 cores" in s["note"]


def test_steal_share_from_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n")
    before = {"loadavg": 3.0, "cpu_times": cpu_times(stat)}
    stat.write_text("cpu  200 0 100 900 10 0 0 90 0 0\n")
    row = load_row(before, {"loadavg": 5.0, "cpu_times": cpu_times(stat)}, cores=2)
    assert cpu_times(stat) == (90, 1300)
    assert row == {
        "loadavg_per_core_before": 1.5,
        "loadavg_per_core_after": 2.5,
        "steal_share": pytest.approx(50 / 300),
    }
    assert cpu_times(tmp_path / "missing") is None


def test_summary_pairs_each_variant_with_the_control_and_the_control_with_the_baseline():
    vs = expand(["memory.ac=none,full"], [])
    control, full = vs
    from trainwise.bench.grid import Variant

    base = Variant({}, "plain PyTorch (fp32)", control.cfg, "b" * 16, kind="baseline")
    vs = [control, full, base]
    drift = [1.0, 2.0, 1.5, 1.0, 3.0, 1.2, 1.0, 2.2]
    times = {
        control.hash: [[10 * d] * 2 for d in drift],
        full.hash: [[13 * d] * 2 for d in drift],
        base.hash: [[9.5 * d] * 2 for d in drift],
    }
    ready = {h: {"threads": 2, "units_per_step": 4096, "device": "cpu"} for h in times}
    out = summarize(vs, times, loads(2.0, 2, n=8), {}, {}, ready, 2, 0.1, 1.0)
    assert out["reliable"] and out["rounds"] == 8
    ratio = out["variants"][full.hash]["speed_ratio_vs_control"]
    assert ratio["reliable"] and ratio["median"] == pytest.approx(1.3) and ratio["n_rounds"] == 8
    assert out["baseline_overhead"]["median"] == pytest.approx(10 / 9.5)
    row = out["variants"][control.hash]
    assert (
        row["median_step_ms"] == median(10 * d for d in drift)
        and row["timed_steps"] == 16
        and "speed_ratio_vs_control" not in row
    )
