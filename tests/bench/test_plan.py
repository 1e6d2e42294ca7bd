"""Planning a bench into a time budget from measured speeds, its timing phase included (pure
arithmetic; the runs are in test_budget.py)."""

from __future__ import annotations

import pytest

from trainwise.bench.grid import control_seeds, expand
from trainwise.bench.plan import (
    SAFETY,
    BudgetPlan,
    Probe,
    plan_budget,
    plan_sets,
    predicted_slowdown,
    run_cost_s,
    run_order,
    step_ladder,
    timing_cost_s,
    timing_rounds,
)
from trainwise.config import load_config
from trainwise.errors import ConfigError

# what `trainwise info` measured on the 2-core AMD EPYC of issue 15 (fp16 has no fast units there)
AMD = {"device": "cpu", "matmul_gflops": {"fp32": 221.9, "bf16": 966.1, "fp16": 1.2}}
INTEL = {
    "device": "cpu",
    "matmul_gflops": {"fp32": 325.9, "bf16": 1274.7, "fp16": 320.5},
}  # the quiet Intel 2-core of the committed demo
GRID = ["precision.policy=fp32,bf16-mixed,fp16-mixed", "memory.ac=none,full"]


def demo_variants():
    vs = expand(GRID, ["precision.policy=fp8-tensorwise"], {}, [])
    seeds = control_seeds(vs, 2)
    return vs + seeds


def bench_cfg(*sets):
    return load_config(None, list(sets)).bench


def test_ladder_is_coarse_and_ends_at_the_recipe_steps():
    assert step_ladder(200) == [10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200]
    assert step_ladder(35) == [10, 12, 15, 20, 25, 30, 35]
    assert step_ladder(8) == [8]


def test_predicted_slowdown_follows_the_measured_matmul_speed():
    vs = {v.label: v for v in demo_variants()}
    slow = {label: predicted_slowdown(v.cfg, v.kind, AMD) for label, v in vs.items()}
    assert slow["fp32, ac=none"] == 1.0 and slow["fp32 control (seed 1)"] == 1.0
    assert slow["bf16-mixed, ac=none"] == pytest.approx(0.2 * 221.9 / 966.1 + 0.8)
    assert slow["fp16-mixed, ac=none"] > 30  # predicted hopeless: planned as pruned
    assert slow["fp32, ac=full"] == pytest.approx(4 / 3)
    assert slow["fp8-tensorwise"] == 3.0  # emulated off an SM89+ GPU
    order = [v.label for v in run_order(list(vs.values()), AMD, 4.0)]
    assert order[:2] == ["fp32, ac=none", "fp32 control (seed 1)"]
    assert order.index("bf16-mixed, ac=full") < order.index(
        "fp16-mixed, ac=full"
    )  # the fast one finishes first: memory is judged against it
    assert order[-2:] == [
        "fp16-mixed, ac=none",
        "fp16-mixed, ac=full",
    ]  # predicted hopeless: last, the first not run when time is short
    assert order.index("fp8-tensorwise") < order.index(
        "fp16-mixed, ac=none"
    )  # emulated fp8 is never pruned: it runs for its quality


def test_plan_takes_the_most_steps_that_fit():
    vs = demo_variants()
    tc = load_config("configs/lm-tiny.toml").train
    probe = Probe(step_s=0.4, fixed_s=5.0, extra_steps=1.0, wall_s=8.0)
    plan = plan_budget(360.0, 25.0, probe, tc, vs, INTEL, bench_cfg(), cores=2)
    assert isinstance(plan, BudgetPlan) and plan.pruned_predicted == [] and not plan.note
    room = SAFETY * (360.0 - 25.0 - plan.timing_reserve_s - plan.tail_s)

    def total(steps):
        return sum(run_cost_s(probe, tc, steps, predicted_slowdown(v.cfg, v.kind, INTEL)) for v in vs)

    ladder = step_ladder(tc.steps)
    assert total(plan.steps) <= room < total(ladder[ladder.index(plan.steps) + 1])
    assert plan.sets == plan_sets(tc, plan.steps) and plan.sets[0] == f"train.steps={plan.steps}"
    # a slower machine gets fewer steps, the same for every variant
    assert plan_budget(360.0, 25.0, Probe(0.8, 5.0, 1.0, 8.0), tc, vs, INTEL, bench_cfg(), cores=2).steps < plan.steps
    # the timing phase is in the plan: without it (bench.timing_rounds = 0) the training phase gets more steps
    assert (
        plan_budget(360.0, 25.0, probe, tc, vs, INTEL, bench_cfg("bench.timing_rounds=0"), cores=2).steps > plan.steps
    )


def test_on_a_cpu_without_fp16_units_the_fp16_variants_are_planned_as_pruned():
    vs = demo_variants()
    tc = load_config("configs/lm-tiny.toml").train
    probe = Probe(0.45, 5.0, 1.0, 8.0)
    plan = plan_budget(360.0, 25.0, probe, tc, vs, AMD, bench_cfg(), cores=2)
    assert plan.pruned_predicted == ["fp16-mixed, ac=none", "fp16-mixed, ac=full"]
    # their reserve is their start, warm-up and memory-measured steps (pruned at the end of the 2nd step), whatever the
    # steps
    slow = 0.2 * 221.9 / 1.2 + 0.8
    assert (
        plan.predicted_s["fp16-mixed, ac=none"]
        == pytest.approx(run_cost_s(probe, tc, 200, slow, pruned=True))
        == pytest.approx(5.0 + 0.45 * slow * 3)
    )
    # the timing phase times neither them, nor emulated fp8, nor the control's other seed
    assert plan.timed == ["fp32, ac=none", "fp32, ac=full", "bf16-mixed, ac=none", "bf16-mixed, ac=full"]
    assert plan.timing_rounds_reserved == 6
    steps_s = [0.45 * predicted_slowdown(v.cfg, v.kind, AMD) for v in vs if v.label in plan.timed]
    assert plan.timing_reserve_s == pytest.approx(timing_cost_s(steps_s, 5.0, 6, 2, cores=2))
    assert (
        plan.steps == 10 and "only part of the grid" in plan.note
    )  # 6 minutes is tight there: the runs planned last may not run


def test_warmup_and_validation_keep_their_share():
    tc = load_config("configs/lm-tiny.toml").train  # 200 steps, warm-up 20, validation every 50
    assert plan_sets(tc, 30) == ["train.steps=30", "train.warmup_steps=3", "train.eval_every=8"]


def test_a_budget_too_small_for_the_control_says_the_minimum():
    vs = demo_variants()
    tc = load_config("configs/lm-tiny.toml").train
    with pytest.raises(ConfigError) as e:
        plan_budget(40.0, 30.0, Probe(0.45, 6.0, 2.0, 10.0), tc, vs, AMD, bench_cfg(), cores=2)
    msg = str(e.value)
    assert "too small for this machine" in msg and "0.45 s a step" in msg
    needed = float(msg.split("--budget-min ")[1].split()[0])
    # and that minimum is enough for a plan
    assert (
        plan_budget(
            needed * 60, 30.0, Probe(0.45, 6.0, 2.0, 10.0), tc, vs, AMD, bench_cfg("bench.timing_rounds=0"), cores=2
        ).steps
        >= 10
    )


def test_timing_rounds_fit_the_time_left_or_none_run():
    steps = {"fp32": 0.5, "bf16-mixed": 0.3, "plain PyTorch (fp32)": 0.5}
    # 3 processes set up 2 at a time (2 x 4 s), 2 warm-up steps each (2.6 s), then 2 steps a round (2.6 s a round)
    assert timing_rounds(8 + 2.6 + 7 * 2.6 + 0.1, steps, 4.0, cores=2, max_rounds=10) == 7
    assert timing_rounds(1000.0, steps, 4.0, cores=2, max_rounds=10) == 10
    assert timing_rounds(8 + 2.6 + 5 * 2.6 + 0.1, steps, 4.0, cores=2) == 0  # 5 rounds cannot give a 95% interval: none
    assert timing_cost_s(list(steps.values()), 4.0, 6, 2, cores=2) == pytest.approx(8 + 2.6 + 6 * 2.6)
