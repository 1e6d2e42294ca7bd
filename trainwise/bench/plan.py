"""Fitting a bench into a time budget, and the order its runs go in (docs/bench.md, "Time budget").

With a budget (`trainwise demo --budget-min 6`, `bench.budget_min`) the steps are planned from
measurements of this machine, now:

1. the fp32 control trains PROBE_STEPS steps in a worker (the speed probe): its median timed
   step, and what a run costs besides its steps (process start, data, validation, model save);
2. each variant's step is predicted as a multiple of the control's from the matmul GFLOP/s
   measured for its dtype (`predicted_slowdown`): only to plan and to order the runs; whether a
   variant is pruned is decided by its own measured steps;
3. train.steps = the largest value on the STEP_LADDER (at most the recipe's steps) for which the
   predicted runs, the quality comparison, the timing phase and the report fit SAFETY x the time
   left; warm-up and validation intervals keep their share of the recipe's steps. Every variant
   trains the same steps, so speed and quality stay comparable.

The ladder is coarse on purpose: two runs on the same machine measure slightly different speeds,
and a coarse ladder makes them choose the same steps (and so the same numbers) almost always.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from trainwise.errors import ConfigError

PROBE_STEPS = 5  # warm-up, the memory-measurement step, 3 timed steps
MIN_STEPS = 10  # fewer steps leave too few timed steps and too little training to compare quality
SAFETY = 0.85  # plan for this share of the time left: a shared machine drifts, and the deadline stops the rest
TAIL_S = 15.0  # after training: quality comparisons, report and figures (seconds, plus TAIL_PER_RUN_S a run)
TAIL_PER_RUN_S = 1.5
TIMING_SHARE = 0.15  # of the budget, for the interleaved timing phase when it is available
# Share of a step that scales with matmul speed when predicting a variant's step from the measured
# matmul GFLOP/s, fitted to the 2-core CPUs: fp16 on the AMD EPYC (1.2 vs 222 GFLOP/s) is predicted
# 38x (32-38x measured), bf16 0.85x there (~0.6x measured): gains are under-predicted,
# so a plan errs towards finishing early.
MATMUL_SHARE = 0.2
AC_SLOWDOWN = {"none": 1.0, "full": 4 / 3}  # full AC reruns each block's forward; other modes rerun part
FP8_EMULATED_SLOWDOWN = 3.0  # fp8 off an SM89+ GPU is emulated (real casts, fp32 matmuls): 2.7x measured on the Intel 2-core CPU
PEAK_DTYPE = {"fp32": "fp32", "bf16-mixed": "bf16", "bf16-true": "bf16", "fp16-mixed": "fp16", "fp8-tensorwise": "bf16", "fp8-rowwise": "bf16"}


def step_ladder(max_steps: int) -> list[int]:
    """10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, ... up to max_steps (the recipe's steps, always included)."""
    out, scale = [], 1
    while True:
        for m in (10, 12, 15, 20, 25, 30, 40, 50, 60, 80):
            s = m * scale
            if s >= max_steps:
                return sorted(set([x for x in out if x >= MIN_STEPS] + [max_steps]))
            out.append(s)
        scale *= 10


def predicted_slowdown(cfg, kind: str, info: dict) -> float:
    """The variant's step over the fp32 control's, predicted from the matmul GFLOP/s measured here."""
    if kind != "trainwise":
        return 1.0  # the baseline and the control's seeds are fp32 like the control
    policy, gflops = cfg.precision.policy, info.get("matmul_gflops") or {}
    if policy.startswith("fp8") and info.get("device") != "cuda":
        m = FP8_EMULATED_SLOWDOWN
    else:
        fp32, other = gflops.get("fp32"), gflops.get(PEAK_DTYPE.get(policy, "fp32"))
        ratio = fp32 / other if fp32 and other else 1.0
        m = MATMUL_SHARE * ratio + (1 - MATMUL_SHARE)
    return m * AC_SLOWDOWN.get(cfg.memory.ac, 1.15)


def run_order(variants: list, info: dict) -> list:
    """The control first (pruning measures against it), then its other seeds (the noise floor is
    needed by every verdict), then the variants predicted fastest first (so that a slow variant
    finds the faster ones finished when its memory saving is judged), the baseline row last."""
    rank = {"control-seed": 1, "trainwise": 2, "baseline": 3}
    return sorted(variants, key=lambda v: (0 if v.is_control else rank[v.kind], predicted_slowdown(v.cfg, v.kind, info)))


@dataclass
class Probe:
    """The control's speed probe: what one run costs on this machine now."""

    step_s: float  # median timed step
    fixed_s: float  # a run's seconds besides its steps: process start, workload, validation, model save
    extra_steps: float  # the warm-up and memory-measurement steps' cost beyond plain steps, in steps
    wall_s: float

    @classmethod
    def from_run(cls, wall_s: float, step_ms: list[float], timed_ms: list[float]) -> "Probe":
        """`step_ms`: every step of the probe run (it logs each); `timed_ms`: the timed ones."""
        from statistics import median

        step_s = median(timed_ms) / 1e3
        total_steps_s = sum(step_ms) / 1e3
        return cls(step_s, max(0.0, wall_s - total_steps_s), max(0.0, total_steps_s / step_s - len(step_ms)), wall_s)


@dataclass
class BudgetPlan:
    steps: int
    sets: list[str]  # the --set overrides that apply the plan to every variant
    budget_s: float
    spent_s: float  # before the plan: the matmul peak measurement and the probe
    predicted_s: dict[str, float] = field(default_factory=dict)  # label -> one run
    pruned_predicted: list[str] = field(default_factory=list)
    timing_reserve_s: float = 0.0
    tail_s: float = 0.0
    probe: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def scaled(value: int, recipe_steps: int, steps: int) -> int:
    """A warm-up or validation interval keeps its share of the run when the steps change (0 stays 0)."""
    return 0 if value == 0 else max(1, round(value * steps / recipe_steps))


def plan_sets(tc, steps: int) -> list[str]:
    return [f"train.steps={steps}", f"train.warmup_steps={scaled(tc.warmup_steps, tc.steps, steps)}",
            f"train.eval_every={scaled(tc.eval_every, tc.steps, steps)}"]


def run_cost_s(probe: Probe, tc, steps: int, slowdown: float, prune_slowdown: float) -> float:
    """Predicted seconds of one run of `steps` steps whose step is `slowdown` x the control's.
    One predicted to be pruned costs its warm-up, memory step, one timed step and the start of the next."""
    if slowdown >= prune_slowdown:
        return probe.fixed_s + probe.step_s * (slowdown * (probe.extra_steps + 3) + prune_slowdown)
    eval_every = scaled(tc.eval_every, tc.steps, steps)
    validations = (steps // eval_every if eval_every else 0) + 2  # the last step's, and the quality predictions
    eval_steps = validations * tc.eval_batches * tc.micro_batch_size / tc.global_batch_size / 3  # forward only: ~1/3 of a step
    return probe.fixed_s + probe.step_s * slowdown * (steps + probe.extra_steps + eval_steps)


def plan_budget(budget_s: float, spent_s: float, probe: Probe, tc, variants: list, info: dict, repeats: int,
                prune_slowdown: float, timing: bool) -> BudgetPlan:
    """The steps every variant trains so that the whole bench fits `budget_s` (seconds; `spent_s`
    of it already used). Raises ConfigError naming the minimum budget when even the fp32 control
    and its seeds cannot be trained MIN_STEPS steps."""
    slow = {v.hash: predicted_slowdown(v.cfg, v.kind, info) for v in variants}
    n_runs = {v.hash: 1 if v.kind == "control-seed" else repeats for v in variants}
    timing_reserve = TIMING_SHARE * budget_s if timing else 0.0
    tail = TAIL_S + TAIL_PER_RUN_S * len(variants)

    def total(steps: int, which) -> float:
        return sum(n_runs[v.hash] * run_cost_s(probe, tc, steps, slow[v.hash], prune_slowdown) for v in which)

    must = [v for v in variants if v.is_control or v.kind == "control-seed"]
    minimum = spent_s + total(min(MIN_STEPS, tc.steps), must) + TAIL_S + TAIL_PER_RUN_S * len(must)
    if minimum > budget_s:
        raise ConfigError(f"time budget {budget_s / 60:.3g} min is too small for this machine: the fp32 control measured {probe.step_s:.2f} s a step "
                          f"and {probe.fixed_s:.0f} s a run besides its steps, so training it (and its {len(must) - 1} other seed(s)) for "
                          f"{min(MIN_STEPS, tc.steps)} steps alone needs about {math.ceil(minimum / 60 * 10) / 10:.1f} min; "
                          f"give --budget-min {math.ceil(minimum / 60 * 10) / 10:.1f} or more")
    room = SAFETY * (budget_s - spent_s - timing_reserve - tail)
    ladder = step_ladder(tc.steps)
    fitting = [s for s in ladder if total(s, variants) <= room]
    steps = fitting[-1] if fitting else ladder[0]
    note = "" if fitting else (f"the budget fits only part of the grid at the minimum {steps} steps: the runs predicted slowest "
                               "(run last) are skipped if time runs out")
    by_label = {v.label: run_cost_s(probe, tc, steps, slow[v.hash], prune_slowdown) for v in variants}
    return BudgetPlan(steps, plan_sets(tc, steps), budget_s, spent_s, by_label,
                      [v.label for v in variants if slow[v.hash] >= prune_slowdown], timing_reserve, tail, asdict(probe), note)


def timing_available() -> bool:
    """Whether the interleaved timing phase (trainwise.bench.timing) is installed: its share of the budget is kept free only then."""
    import importlib.util

    return importlib.util.find_spec("trainwise.bench.timing") is not None


def timing_rounds(budget_s: float, step_s: dict[str, float], fixed_s: float, warmup_steps: int = 2,
                  max_rounds: int = 10, steps_per_round: int = 2, min_rounds: int = 3) -> int:
    """Rounds of the interleaved timing phase (trainwise.bench.timing.time_variants) that fit
    `budget_s`: one persistent process per variant (`fixed_s` to start and build it, then its
    warm-up steps), then each round runs `steps_per_round` steps of every variant at its measured
    step time (`step_s`: label -> seconds). At most `max_rounds` (bench.timing_rounds); 0 when
    fewer than `min_rounds` fit (too few rounds for an interval of the median ratio).

    >>> timing_rounds(100.0, {"fp32": 0.5, "bf16": 0.3}, 4.0)
    10
    >>> timing_rounds(15.0, {"fp32": 0.5, "bf16": 0.3}, 4.0)
    3
    >>> timing_rounds(10.0, {"fp32": 0.5, "bf16": 0.3}, 4.0)
    0
    """
    setup = sum(fixed_s + warmup_steps * s for s in step_s.values())
    per_round = steps_per_round * sum(step_s.values())
    rounds = min(max_rounds, int((budget_s - setup) // per_round)) if per_round > 0 else 0
    return rounds if rounds >= min_rounds else 0
