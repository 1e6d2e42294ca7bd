"""Fitting a bench into a time budget, and the order its runs go in (docs/bench.md, "Time budget").

With a budget (`trainwise demo --budget-min 6`, `bench.budget_min`) the steps are planned from
measurements of this machine, now. What the budget holds, in order:

1. the matmul peak measurement (`trainwise info`'s probe, for MFU) and
2. the speed probe: the fp32 control trains PROBE_STEPS steps in a worker: its median timed step,
   and what a run costs besides its steps (process start, data, validation, model save);
3. the training phase: each variant's step is predicted as a multiple of the control's from the
   matmul GFLOP/s measured for its dtype (`predicted_slowdown`): only to plan and to order the
   runs; whether a variant is pruned is decided by its own measured steps;
4. the timing phase (trainwise.bench.timing): one process per variant to time, set up in
   parallel, its warm-up steps, then at least MIN_ROUNDS interleaved rounds (`timing_cost_s`);
   more rounds, up to bench.timing_rounds, when the training phase leaves time;
5. the quality comparisons and the report (TAIL_S + TAIL_PER_RUN_S a run).

train.steps = the largest value on the STEP_LADDER (at most the recipe's steps) for which the
predicted runs fit SAFETY x what 1, 2, 4 and 5 leave; warm-up and validation intervals keep their
share of the recipe's steps. Every variant trains the same steps, so speed and quality stay
comparable. The ladder is coarse on purpose: two runs on the same machine measure slightly
different speeds, and a coarse ladder makes them choose the same steps (and so the same numbers)
almost always.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import median

from trainwise.bench.results import PEAK_DTYPE
from trainwise.bench.timing_stats import MIN_ROUNDS
from trainwise.errors import ConfigError

PROBE_STEPS = 5  # warm-up, the memory-measurement step, 3 timed steps
MIN_STEPS = 10  # fewer steps leave too few timed steps and too little training to compare quality
SAFETY = 0.85  # plan for this share of the time left: a shared machine drifts, and the deadline stops the rest
TAIL_S = 15.0  # after training: quality comparisons, report and figures (seconds, plus TAIL_PER_RUN_S a run)
TAIL_PER_RUN_S = 1.5
TIMING_WARMUP_STEPS = 2  # untimed steps of each timing process before its first round
# Share of a step that scales with matmul speed when predicting a variant's step from the measured
# matmul GFLOP/s, fitted to the 2-core CPUs: fp16 on the AMD EPYC (1.2 vs 222 GFLOP/s) is predicted
# 38x (32-38x measured), bf16 0.85x there (~0.6x measured): gains are under-predicted,
# so a plan errs towards finishing early.
MATMUL_SHARE = 0.2
AC_SLOWDOWN = {"none": 1.0, "full": 4 / 3}  # full AC reruns each block's forward; other modes rerun part
FP8_EMULATED_SLOWDOWN = (
    3.0  # fp8 off an SM89+ GPU is emulated (real casts, fp32 matmuls): 2.7x measured on the Intel 2-core CPU
)


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
    if emulated(cfg, kind, info):
        m = FP8_EMULATED_SLOWDOWN
    else:
        fp32, other = gflops.get("fp32"), gflops.get(PEAK_DTYPE.get(policy, "fp32"))
        ratio = fp32 / other if fp32 and other else 1.0
        m = MATMUL_SHARE * ratio + (1 - MATMUL_SHARE)
    return m * AC_SLOWDOWN.get(cfg.memory.ac, 1.15)


def emulated(cfg, kind: str, info: dict) -> bool:
    """fp8 runs emulated off a CUDA device (the trainer's rule, trainwise.train.precision.fp8_gemm_kind):
    there for its numerics, never pruned for its speed, not timed."""
    return kind == "trainwise" and cfg.precision.policy.startswith("fp8") and info.get("device") != "cuda"


def predicted_pruned(v, info: dict, prune_slowdown: float) -> bool:
    return (
        v.kind == "trainwise"
        and not v.is_control
        and not emulated(v.cfg, v.kind, info)
        and predicted_slowdown(v.cfg, v.kind, info) >= prune_slowdown
    )


def run_order(variants: list, info: dict, prune_slowdown: float = float("inf")) -> list:
    """The control first (pruning measures against it), then its other seeds (the noise floor is
    needed by every verdict), then the variants predicted fastest first (so that a slow variant
    finds the faster ones finished when its memory saving is judged), then the baseline row, and
    last the variants predicted to be pruned: when time runs short, those are the ones not run."""
    rank = {"control-seed": 1, "trainwise": 2, "baseline": 3}

    def key(v):
        if v.is_control:
            return (0, 0.0)
        if predicted_pruned(v, info, prune_slowdown):
            return (4, predicted_slowdown(v.cfg, v.kind, info))
        return (rank[v.kind], predicted_slowdown(v.cfg, v.kind, info))

    return sorted(variants, key=key)


def timed_in_phase(v, info: dict, prune_slowdown: float) -> bool:
    """Whether the timing phase is planned to time `v`: a trainwise variant or the baseline, not one
    of the control's other seeds, not emulated, not predicted to be pruned."""
    return (
        v.kind in ("trainwise", "baseline")
        and not emulated(v.cfg, v.kind, info)
        and not predicted_pruned(v, info, prune_slowdown)
    )


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
        step_s = median(timed_ms) / 1e3
        total_steps_s = sum(step_ms) / 1e3
        return cls(step_s, max(0.0, wall_s - total_steps_s), max(0.0, total_steps_s / step_s - len(step_ms)), wall_s)


@dataclass
class BudgetPlan:
    steps: int
    sets: list[str]  # the --set overrides that apply the plan to every variant
    budget_s: float
    spent_s: float  # before the plan: the matmul peak measurement and the speed probe
    predicted_s: dict[str, float] = field(default_factory=dict)  # label -> its training run
    pruned_predicted: list[str] = field(default_factory=list)
    timing_reserve_s: float = 0.0  # the timing phase at timing_rounds_reserved rounds
    timing_rounds_reserved: int = 0
    timed: list[str] = field(default_factory=list)  # the labels the timing phase is planned to time
    tail_s: float = 0.0
    probe: dict = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def scaled(value: int, recipe_steps: int, steps: int) -> int:
    """A warm-up or validation interval keeps its share of the run when the steps change (0 stays 0)."""
    return 0 if value == 0 else max(1, round(value * steps / recipe_steps))


def plan_sets(tc, steps: int) -> list[str]:
    return [
        f"train.steps={steps}",
        f"train.warmup_steps={scaled(tc.warmup_steps, tc.steps, steps)}",
        f"train.eval_every={scaled(tc.eval_every, tc.steps, steps)}",
    ]


def run_cost_s(probe: Probe, tc, steps: int, slowdown: float, pruned: bool = False) -> float:
    """Predicted seconds of one run of `steps` steps whose step is `slowdown` x the control's.
    One predicted to be pruned costs its start, warm-up and memory-measured steps (trainwise.bench.prune
    decides at the end of its 2nd step), whatever the steps."""
    if pruned:
        return probe.fixed_s + probe.step_s * slowdown * (2 + probe.extra_steps)
    eval_every = scaled(tc.eval_every, tc.steps, steps)
    validations = (steps // eval_every if eval_every else 0) + 2  # the last step's, and the quality predictions
    eval_steps = (
        validations * tc.eval_batches * tc.micro_batch_size / tc.global_batch_size / 3
    )  # forward only: ~1/3 of a step
    return probe.fixed_s + probe.step_s * slowdown * (steps + probe.extra_steps + eval_steps)


def timing_setup_s(n_processes: int, fixed_s: float, cores: int) -> float:
    """The timing processes start at once and build their variants in parallel, `cores` at a time;
    each costs about what a training run costs besides its steps (start, imports, workload, model)."""
    return fixed_s * math.ceil(n_processes / max(1, min(n_processes, cores))) if n_processes else 0.0


def timing_cost_s(
    step_s: list[float],
    fixed_s: float,
    rounds: int,
    steps_per_round: int,
    cores: int,
    warmup_steps: int = TIMING_WARMUP_STEPS,
) -> float:
    """Seconds of a timing phase over processes whose steps take `step_s`: their set-up, their
    warm-up steps (one process after another), then `rounds` rounds of `steps_per_round` steps each."""
    if not step_s or not rounds:
        return 0.0
    return timing_setup_s(len(step_s), fixed_s, cores) + (warmup_steps + rounds * steps_per_round) * sum(step_s)


def timing_rounds(
    budget_s: float,
    step_s: dict[str, float],
    fixed_s: float,
    cores: int = 1,
    warmup_steps: int = TIMING_WARMUP_STEPS,
    max_rounds: int = 10,
    steps_per_round: int = 2,
    min_rounds: int = MIN_ROUNDS,
) -> int:
    """Rounds of the interleaved timing phase (trainwise.bench.timing.time_variants) that fit
    `budget_s` (see `timing_cost_s`; `step_s`: label -> measured seconds a step). At most
    `max_rounds` (bench.timing_rounds); 0 when fewer than `min_rounds` fit: fewer than MIN_ROUNDS
    rounds cannot give a 95% interval of a median ratio, so they would only cost time.

    >>> timing_rounds(100.0, {"fp32": 0.5, "bf16": 0.3}, 4.0)
    10
    >>> timing_rounds(20.0, {"fp32": 0.5, "bf16": 0.3}, 4.0)
    6
    >>> timing_rounds(15.0, {"fp32": 0.5, "bf16": 0.3}, 4.0)
    0
    """
    total = sum(step_s.values())
    if not total:
        return 0
    fixed = timing_setup_s(len(step_s), fixed_s, cores) + warmup_steps * total
    rounds = min(max_rounds, int((budget_s - fixed) // (steps_per_round * total)))
    return rounds if rounds >= min_rounds else 0


def plan_budget(
    budget_s: float, spent_s: float, probe: Probe, tc, variants: list, info: dict, bc, cores: int = 1
) -> BudgetPlan:
    """The steps every variant trains so that the whole bench, its timing phase included, fits
    `budget_s` (seconds; `spent_s` of it already used). `bc`: the [bench] config (prune_slowdown,
    timing_rounds, timing_steps_per_round). Raises ConfigError naming the minimum budget when even
    the fp32 control and its seeds cannot be trained MIN_STEPS steps."""
    slow = {v.hash: predicted_slowdown(v.cfg, v.kind, info) for v in variants}
    pruned = {v.hash: predicted_pruned(v, info, bc.prune_slowdown) for v in variants}
    timed = [v for v in variants if timed_in_phase(v, info, bc.prune_slowdown)]
    reserved_rounds = min(bc.timing_rounds, MIN_ROUNDS)
    timing_reserve = timing_cost_s(
        [probe.step_s * slow[v.hash] for v in timed], probe.fixed_s, reserved_rounds, bc.timing_steps_per_round, cores
    )
    tail = TAIL_S + TAIL_PER_RUN_S * len(variants)

    def total(steps: int, which) -> float:
        return sum(run_cost_s(probe, tc, steps, slow[v.hash], pruned[v.hash]) for v in which)

    must = [v for v in variants if v.is_control or v.kind == "control-seed"]
    minimum = spent_s + total(min(MIN_STEPS, tc.steps), must) + TAIL_S + TAIL_PER_RUN_S * len(must)
    if minimum > budget_s:
        raise ConfigError(
            f"time budget {budget_s / 60:.3g} min is too small for this machine: the fp32 control measured "
            f"{probe.step_s:.2f} s a step and {probe.fixed_s:.0f} s a run besides its steps, so training it (and its "
            f"{len(must) - 1} other seed(s)) for {min(MIN_STEPS, tc.steps)} steps alone needs about "
            f"{math.ceil(minimum / 60 * 10) / 10:.1f} min; give --budget-min {math.ceil(minimum / 60 * 10) / 10:.1f} "
            "or more"
        )
    room = SAFETY * (budget_s - spent_s - timing_reserve - tail)
    ladder = step_ladder(tc.steps)
    fitting = [s for s in ladder if total(s, variants) <= room]
    steps = fitting[-1] if fitting else ladder[0]
    note = (
        ""
        if fitting
        else (
            f"the budget fits only part of the grid at the minimum {steps} steps: the runs planned last "
            "(those predicted slowest) are not run if time runs out"
        )
    )
    by_label = {v.label: run_cost_s(probe, tc, steps, slow[v.hash], pruned[v.hash]) for v in variants}
    return BudgetPlan(
        steps,
        plan_sets(tc, steps),
        budget_s,
        spent_s,
        by_label,
        [v.label for v in variants if pruned[v.hash]],
        timing_reserve,
        reserved_rounds if timed else 0,
        [v.label for v in timed],
        tail,
        asdict(probe),
        note,
    )
