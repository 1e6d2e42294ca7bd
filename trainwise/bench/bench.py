"""`run_bench`: plan the variants, run them in subprocesses, compare, recommend, report."""

from __future__ import annotations

import time
from pathlib import Path

from trainwise.bench.budget import machine_fingerprint, plan_for_budget
from trainwise.bench.plan import run_order, timing_available
from trainwise.bench.progress import BenchProgress
from trainwise.bench.recommend import recommend
from trainwise.bench.report import render_html, render_markdown
from trainwise.bench.results import add_quality, add_time_to_target, aggregate
from trainwise.bench.runner import BENCH_SETS, FINISHED, Supervision, claim_out_dir, load_base, plan, run_variants
from trainwise.rundir import write_atomic, write_json


def peak_info(cfg) -> dict:
    """Peak matmul GFLOP/s per dtype, measured now, with the threads the variants use.

    Measured in the same run as the variants (DESIGN.md, 'Measuring honestly'): a cached figure
    from a busier or quieter moment would make MFU meaningless (a stale cache once gave 610%).
    The fresh measurement also refreshes `trainwise info`'s cache."""
    import torch

    from trainwise.env import collect_info, pick_device

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    return collect_info(pick_device(cfg.train.device), refresh=True)


def run_bench(config: str | Path, grid: list[str], variants: list[str] = (), overrides: list[str] = (), out: str | Path = "bench",
              repeats: int | None = None, cost_per_hour: float | None = None, budget_min: float | None = None, log=print,
              progress: bool = False) -> dict:
    """Run the bench into `out`; returns {'results', 'recommendation', 'report'}.

    With `budget_min` (or bench.budget_min) the steps are planned so that the whole bench fits
    that many minutes on this machine (trainwise.bench.plan)."""
    t_start = time.monotonic()
    sets = list(overrides)
    for field, value in (("repeats", repeats), ("cost_per_hour", cost_per_hour), ("budget_min", budget_min)):
        if value is not None:
            sets.append(f"bench.{field}={value}")
    base, vs, seed_hashes = plan(config, list(grid), list(variants), sets)  # every variant validated before anything runs
    out = Path(out)
    claim_out_dir(out, base, vs)
    info = peak_info(base)
    bc = base.bench
    budget = None
    if bc.budget_min:
        budget = plan_for_budget(out, load_base(config), BENCH_SETS + sets, str(config), base, vs, info, t_start, timing_available(), log)
        unplanned = base
        base, vs, seed_hashes = plan(config, list(grid), list(variants), sets + budget.sets)
        claim_out_dir(out, unplanned, vs)  # the folder's identity is the bench before planning: a rerun finds it
    ordered = run_order(vs, info)
    sup = Supervision(bc.prune_slowdown, machine_fingerprint(info), info.get("device", "cpu"))
    if budget:
        sup.deadline = t_start + budget.budget_s - budget.tail_s - budget.timing_reserve_s
        sup.predicted_s = {v.hash: budget.predicted_s.get(v.label, 0.0) for v in vs}
    n_runs = sum(1 if v.kind == "control-seed" else bc.repeats for v in vs)
    sup.progress = BenchProgress(n_runs, enabled=progress, tail_s=budget.tail_s + budget.timing_reserve_s if budget else 0.0)
    log(f"bench: {len(vs)} variants ({bc.control_seeds} seed(s) of the fp32 control) x {bc.repeats} repeat(s) into {out}; "
        f"order: {', '.join(v.label for v in ordered)}")
    raw = run_variants(out, ordered, bc.repeats, log, sup)
    rows = [aggregate(v, raw[v.hash], info, bc.cost_per_hour) for v in vs]
    dirs = {v.hash: out / "variants" / v.dir_name for v in vs}
    floor = add_quality(rows, dirs, bc.tolerance, bc.confidence, seed_hashes, base.train.micro_batch_size, base.train.eval_batches)
    # The timing phase (trainwise.bench.timing.time_variants) goes here, over the finished variants
    # that are not pruned, with rounds = plan.timing_rounds(t_start + budget.budget_s - budget.tail_s -
    # now, {label: median step s}, budget.probe["fixed_s"], max_rounds=bc.timing_rounds) and
    # deadline_s = t_start + budget.budget_s - budget.tail_s; without a budget, bc.timing_rounds.
    control = next(r for r in rows if r["is_control"])
    target = bc.target_val_loss or ((control["final_val_loss"] or 0) * (1 + bc.tolerance) if control["status"] in FINISHED else 0.0)
    add_time_to_target(rows, target)
    rec = recommend(rows, bc.memory_budget_gib, bc.tolerance, info.get("device", "cpu"), bc.min_gain)
    meta = {"config": str(config), "overrides": sets, "device": _device_words(info), "matmul_gflops": info.get("matmul_gflops"),
            "target_val_loss": target, "tolerance": bc.tolerance, "repeats": bc.repeats, "noise_floor": floor,
            "prune_slowdown": bc.prune_slowdown, "control_seeds": bc.control_seeds, "min_gain": bc.min_gain,
            "run_order": [v.label for v in ordered], "budget": budget.to_dict() if budget else None,
            "steps": base.train.steps, "throughput_unit": control.get("throughput_unit") or "tokens"}
    write_json(out / "results.json", rows)
    write_json(out / "recommendation.json", {**rec, "meta": meta})
    write_atomic(out / "report.md", render_markdown(rows, rec, meta))
    write_atomic(out / "report.html", render_html(rows, rec, meta))
    meta["wall_s"] = time.monotonic() - t_start
    write_json(out / "recommendation.json", {**rec, "meta": meta})
    return {"results": rows, "recommendation": rec, "report": out / "report.html", "meta": meta}


def _device_words(info: dict) -> str:
    if info.get("device") == "cuda":
        return f"{info.get('gpu_name')} (cuda)"
    return f"{info.get('cpu_model')}, {info.get('cpu_cores')} cores, {info.get('torch_threads')} torch threads (cpu)"
