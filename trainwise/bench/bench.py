"""`run_bench`: one bench from start to end (docs/bench.md).

1. plan: every variant validated before anything runs; the matmul peaks measured (MFU); with a
   time budget, the control's speed probed and train.steps planned so that everything below
   fits (plan.py, budget.py);
2. training phase: the control first, its other seeds (the noise floor; never timed), the other
   variants predicted fastest first, the baseline, then those predicted hopeless; a variant that
   shows itself hopeless is pruned while it runs; the budget's deadline stops the rest (runner.py);
3. timing phase: the finished trainwise variants (not pruned, not the seeds, not emulated fp8) and
   the plain-PyTorch baseline, timed in interleaved rounds; with a budget, its rounds and deadline
   come from the time left (timing.py, plan.timing_rounds);
4. quality: three-valued verdicts against the control with its noise floor in the margin (quality.py);
5. recommendation: the simplest passing variant not clearly slower than the fastest, by the timing
   phase's paired ratios; no speed claim when the timing phase says the machine was too busy (recommend.py);
6. report: results.json, recommendation.json, report.md, report.html.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median

import torch

from trainwise.bench.budget import machine_fingerprint, plan_for_budget
from trainwise.bench.grid import seed_hashes
from trainwise.bench.plan import emulated, run_order, timing_rounds
from trainwise.bench.progress import BenchProgress
from trainwise.bench.recommend import recommend
from trainwise.bench.report import render_html, render_markdown
from trainwise.bench.results import achieved_gflops, add_quality, add_time_to_target, aggregate, peak_dtype
from trainwise.bench.runner import BENCH_SETS, FINISHED, Supervision, claim_out_dir, load_base, plan, run_variants
from trainwise.bench.timing import time_variants
from trainwise.bench.timing_stats import MIN_ROUNDS, usable_cores
from trainwise.env import collect_info, pick_device
from trainwise.errors import ConfigError
from trainwise.rundir import write_atomic, write_json


def peak_info(cfg) -> dict:
    """Peak matmul GFLOP/s per dtype, measured now, with the threads the variants use.

    Measured in the same run as the variants (DESIGN.md, 'Measuring honestly'): a cached figure
    from a busier or quieter moment would make MFU meaningless (a stale cache once gave 610%).
    The fresh measurement also refreshes `trainwise info`'s cache. Its cost is in the time budget
    (measured before the plan: the plan's `spent_s`)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    return collect_info(pick_device(cfg.train.device), refresh=True, allow_tf32=cfg.precision.allow_tf32)


def run_bench(
    config: str | Path,
    grid: list[str],
    variants: list[str] = (),
    overrides: list[str] = (),
    out: str | Path = "bench",
    cost_per_hour: float | None = None,
    budget_min: float | None = None,
    log=print,
    progress: bool = False,
    timing_deadline_s: float | None = None,
    started_s: float | None = None,
) -> dict:
    """Run the bench into `out`; returns {'results', 'recommendation', 'report', 'timing', 'meta'}.

    With `budget_min` (or bench.budget_min) the whole bench fits that many minutes from
    `started_s` (a time.monotonic() value; default now). `timing_deadline_s` (time.monotonic())
    ends the timing phase after the round running then."""
    # Over 60 lines on purpose: the bench's phases in the order they run (plan, train, time, judge, report), read top to
    # bottom like train(); the report's meta dict is a third of it.
    t_start = time.monotonic() if started_s is None else started_s
    sets = list(overrides) + [
        f"bench.{k}={v}" for k, v in (("cost_per_hour", cost_per_hour), ("budget_min", budget_min)) if v is not None
    ]
    base, vs = plan(config, list(grid), list(variants), sets)  # every variant validated before anything runs
    check_retired(base.bench)
    out = Path(out)
    claim_out_dir(out, base, vs)
    info = peak_info(base)
    phases = {"measuring": time.monotonic() - t_start}
    budget = None
    if base.bench.budget_min:
        budget = plan_for_budget(out, load_base(config), BENCH_SETS + sets, str(config), base, vs, info, t_start, log)
        unplanned = base
        base, vs = plan(config, list(grid), list(variants), sets + budget.sets)
        claim_out_dir(out, unplanned, vs)  # the folder's identity is the bench before planning: a rerun finds it
        phases["measuring"] = time.monotonic() - t_start
    bc = base.bench
    ordered = run_order(vs, info, bc.prune_slowdown)
    log(
        f"bench: {len(vs)} variants ({bc.control_seeds} seed(s) of the fp32 control) into {out}; order: "
        f"{', '.join(v.label for v in ordered)}"
    )
    t = time.monotonic()
    raw = run_variants(out, ordered, log, supervision(bc, info, vs, budget, t_start, progress))
    phases["training"], t = time.monotonic() - t, time.monotonic()
    timing, timing_note = run_timing_phase(out, vs, raw, bc, info, log, budget, t_start, timing_deadline_s)
    phases["timing"], t = time.monotonic() - t, time.monotonic()
    rows = [
        aggregate(v, raw.get(v.hash), info, bc.cost_per_hour, ((timing or {}).get("variants") or {}).get(v.hash))
        for v in vs
    ]
    dirs = {v.hash: out / "variants" / v.dir_name for v in vs}
    floor = add_quality(
        rows, dirs, bc.tolerance, bc.confidence, seed_hashes(vs), base.train.micro_batch_size, base.train.eval_batches
    )
    control = next(r for r in rows if r["is_control"])
    target = bc.target_val_loss or (
        (control["final_val_loss"] or 0) * (1 + bc.tolerance) if control["status"] in FINISHED else 0.0
    )
    add_time_to_target(rows, target)
    rec = recommend(
        rows, bc.memory_budget_gib, bc.tolerance, info.get("device", "cpu"), bc.min_gain, timing_meta(timing)
    )
    add_timed_overhead(rec, timing, timing_note)
    phases["quality"] = time.monotonic() - t
    meta = {
        "config": str(config),
        "overrides": sets,
        "device": _device_words(info),
        "matmul_gflops": info.get("matmul_gflops"),
        "target_val_loss": target,
        "tolerance": bc.tolerance,
        "timing": timing_meta(timing),
        "timing_note": timing_note,
        "noise_floor": floor,
        "prune_slowdown": bc.prune_slowdown,
        "control_seeds": bc.control_seeds,
        "min_gain": bc.min_gain,
        "run_order": [v.label for v in ordered],
        "budget": budget.to_dict() if budget else None,
        "steps": base.train.steps,
        "throughput_unit": control.get("throughput_unit") or "tokens",
        "phases_s": phases,
    }
    write_json(out / "results.json", rows)
    write_atomic(out / "report.md", render_markdown(rows, rec, meta))
    write_atomic(out / "report.html", render_html(rows, rec, meta))
    meta["wall_s"] = time.monotonic() - t_start  # the report's own rendering included
    write_json(out / "recommendation.json", {**rec, "meta": meta})
    return {"results": rows, "recommendation": rec, "report": out / "report.html", "timing": timing, "meta": meta}


def check_retired(bc) -> None:
    if bc.repeats != 1:
        raise ConfigError(
            f"bench.repeats = {bc.repeats}: retired, it must be 1; each variant now trains once and its speed comes "
            f"from interleaved timing rounds after training: set bench.timing_rounds (now {bc.timing_rounds}) instead"
        )


def supervision(bc, info: dict, vs: list, budget, t_start: float, progress: bool) -> Supervision:
    """What the runner watches for: pruning (never emulated fp8: it is there for its quality), the
    training phase's deadline (the budget less the timing phase's reserve and the tail), progress."""
    sup = Supervision(
        bc.prune_slowdown,
        machine_fingerprint(info),
        info.get("device", "cpu"),
        unprunable={v.hash for v in vs if emulated(v.cfg, v.kind, info)},
        max_load_per_core=bc.max_load_per_core,
    )
    if budget:
        sup.deadline = t_start + budget.budget_s - budget.tail_s - budget.timing_reserve_s
        sup.predicted_s = {v.hash: budget.predicted_s.get(v.label, 0.0) for v in vs}
    sup.progress = BenchProgress(
        len(vs), enabled=progress, tail_s=budget.tail_s + budget.timing_reserve_s if budget else 0.0
    )
    return sup


def to_time(vs: list, raw: dict, info: dict) -> list:
    """The variants the timing phase times: the finished trainwise variants (pruned ones did not
    finish; the control's other seeds and emulated fp8 are not timed) and the baseline."""
    return [
        v
        for v in vs
        if v.kind in ("trainwise", "baseline")
        and (raw.get(v.hash) or {}).get("status") in FINISHED
        and not emulated(v.cfg, v.kind, info)
    ]


def timing_schedule(
    bc, budget, t_start: float, deadline_s: float | None, timed: list, raw: dict
) -> tuple[int, float | None, str | None]:
    """(rounds, deadline, note) of the timing phase: bench.timing_rounds without a budget; with
    one, the rounds (at most bench.timing_rounds, at least MIN_ROUNDS, else none) that fit the time
    left before the tail, with the measured step times of the variants to time."""
    if budget is None:
        return bc.timing_rounds, deadline_s, None
    end = t_start + budget.budget_s - budget.tail_s
    left = end - time.monotonic()
    step_s = {v.label: raw[v.hash]["median_step_ms"] / 1e3 for v in timed if raw[v.hash].get("median_step_ms")}
    rounds = timing_rounds(
        left,
        step_s,
        budget.probe["fixed_s"],
        usable_cores(),
        max_rounds=bc.timing_rounds,
        steps_per_round=bc.timing_steps_per_round,
    )
    note = (
        None
        if rounds
        else (
            f"the timing phase did not run: {max(left, 0):.0f} s of the time budget were left, too few for "
            f"{MIN_ROUNDS} interleaved rounds of {len(timed)} variants"
        )
    )
    return rounds, min(end, deadline_s) if deadline_s else end, note


def run_timing_phase(
    out: Path, vs: list, raw: dict, bc, info: dict, log, budget, t_start: float, deadline_s: float | None
) -> tuple[dict | None, str | None]:
    """The interleaved timing rounds (trainwise/bench/timing.py) over the variants `to_time`; (None,
    why) when it does not run: bench.timing_rounds = 0, the control did not finish, or too little time left."""

    def gemm_peak_dtype(v, step_ms: float) -> str | None:
        # only where the square-matrix probe would put MFU above 100%: then measure the model's own shapes
        dtype, rate = peak_dtype(v), achieved_gflops(raw[v.hash].get("flops_per_step"), step_ms)
        square = (info.get("matmul_gflops") or {}).get(dtype)
        return dtype if rate and square and rate > square else None

    timed = to_time(vs, raw, info)
    if not bc.timing_rounds:
        return None, "bench.timing_rounds = 0"
    if not any(v.is_control for v in timed):
        return None, "the timing phase did not run: the fp32 control did not finish"
    rounds, deadline, note = timing_schedule(bc, budget, t_start, deadline_s, timed, raw)
    if not rounds:
        log(f"timing: {note}")
        return None, note
    return time_variants(
        out,
        timed,
        rounds,
        bc.timing_steps_per_round,
        log=log,
        deadline_s=deadline,
        max_ratio_ci=bc.max_ratio_ci,
        max_load_per_core=bc.max_load_per_core,
        gemm_peak_dtype=gemm_peak_dtype,
    ), None


def add_timed_overhead(rec: dict, timing: dict | None, timing_note: str | None) -> None:
    """trainwise's overhead over plain PyTorch from the paired rounds (control / baseline, median
    of per-round ratios); never from two unpaired training runs minutes apart (the "-79%" of
    issue 15): without the timing phase, or on a machine too busy to support it, no figure and the reason."""
    overhead = (timing or {}).get("baseline_overhead")
    if overhead is None:
        rec["trainwise_overhead_vs_plain_pytorch"] = rec["trainwise_overhead_ci95"] = None
        rec["trainwise_overhead_note"] = f"not quoted: {timing_note or 'the baseline was not timed'}"
        return
    rec["trainwise_overhead_vs_plain_pytorch"] = overhead["median"] - 1 if overhead["reliable"] else None
    rec["trainwise_overhead_ci95"] = [x - 1 for x in overhead["ci95"]] if overhead["reliable"] else None
    rec["trainwise_overhead_note"] = overhead["note"]


def timing_meta(timing: dict | None) -> dict | None:
    """The timing phase's verdict and its load, for the recommendation and the report."""
    if timing is None:
        return None
    out = {
        k: timing.get(k)
        for k in (
            "rounds",
            "rounds_planned",
            "steps_per_round",
            "reliable",
            "unreliable_reason",
            "cores",
            "statistic",
            "wall_s",
        )
    }
    loads = timing.get("load") or []
    out["load_per_core"] = (
        median((r["loadavg_per_core_before"] + r["loadavg_per_core_after"]) / 2 for r in loads) if loads else None
    )
    steals = [r["steal_share"] for r in loads if r.get("steal_share") is not None]
    out["steal_share"] = median(steals) if steals else None
    ratios = [
        v["speed_ratio_vs_control"] for v in (timing.get("variants") or {}).values() if v.get("speed_ratio_vs_control")
    ]
    ratios += [timing["baseline_overhead"]] if timing.get("baseline_overhead") else []
    out["ratios"], out["ratios_quoted"] = len(ratios), sum(1 for x in ratios if x.get("reliable"))
    return out


def _device_words(info: dict) -> str:
    if info.get("device") == "cuda":
        return f"{info.get('gpu_name')} (cuda)"
    return f"{info.get('cpu_model')}, {info.get('cpu_cores')} cores, {info.get('torch_threads')} torch threads (cpu)"
