"""`run_bench`: plan the variants, run them in subprocesses, compare, recommend, report."""

from __future__ import annotations

from pathlib import Path

from trainwise.bench.recommend import recommend
from trainwise.bench.report import render_html, render_markdown
from trainwise.bench.results import add_quality, add_time_to_target, aggregate
from trainwise.bench.runner import FINISHED, claim_out_dir, plan, run_variants
from trainwise.errors import ConfigError
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
              repeats: int | None = None, cost_per_hour: float | None = None, log=print, timing_deadline_s: float | None = None) -> dict:
    """Run the bench into `out`: train every variant, time their steps in interleaved rounds,
    compare, recommend, report. Returns {'results', 'recommendation', 'report', 'timing'}.
    `timing_deadline_s` (a time.monotonic() value) ends the timing phase after the current round."""
    sets = list(overrides)
    if repeats is not None:
        sets.append(f"bench.repeats={repeats}")
    if cost_per_hour is not None:
        sets.append(f"bench.cost_per_hour={cost_per_hour}")
    base, vs = plan(config, list(grid), list(variants), sets)  # every variant validated before anything runs
    bc = base.bench
    if bc.repeats != 1:
        raise ConfigError(f"bench.repeats = {bc.repeats}: retired, it must be 1; each variant now trains once and its speed comes from "
                          f"interleaved timing rounds after training: set bench.timing_rounds (now {bc.timing_rounds}) instead")
    out = Path(out)
    claim_out_dir(out, base, vs)
    info = peak_info(base)
    log(f"bench: {len(vs)} variants into {out}")
    raw = run_variants(out, vs, 1, log)
    timing = run_timing_phase(out, vs, raw, bc, info, log, timing_deadline_s)
    rows = [aggregate(v, raw[v.hash], info, bc.cost_per_hour, (timing or {}).get("variants", {}).get(v.hash)) for v in vs]
    dirs = {v.hash: out / "variants" / v.dir_name for v in vs}
    add_quality(rows, dirs, bc.tolerance, bc.confidence)
    control = next(r for r in rows if r["is_control"])
    target = bc.target_val_loss or ((control["final_val_loss"] or 0) * (1 + bc.tolerance) if control["status"] in FINISHED else 0.0)
    add_time_to_target(rows, target)
    rec = recommend(rows, bc.memory_budget_gib, bc.tolerance, info.get("device", "cpu"))
    add_timed_overhead(rec, timing)
    meta = {"config": str(config), "overrides": sets, "device": _device_words(info), "matmul_gflops": info.get("matmul_gflops"),
            "target_val_loss": target, "tolerance": bc.tolerance, "repeats": bc.repeats, "timing": timing_meta(timing)}
    write_json(out / "results.json", rows)
    write_json(out / "recommendation.json", {**rec, "meta": meta})
    write_atomic(out / "report.md", render_markdown(rows, rec, meta))
    write_atomic(out / "report.html", render_html(rows, rec, meta))
    return {"results": rows, "recommendation": rec, "report": out / "report.html", "timing": timing}


def run_timing_phase(out: Path, vs: list, raw: dict, bc, info: dict, log, deadline_s: float | None) -> dict | None:
    """The interleaved timing rounds (trainwise/bench/timing.py) over the variants whose training
    finished; None when bench.timing_rounds = 0."""
    from trainwise.bench.results import achieved_gflops, peak_dtype
    from trainwise.bench.timing import time_variants

    def gemm_peak_dtype(v, step_ms: float) -> str | None:
        # only where the square-matrix probe would put MFU above 100%: then measure the model's own shapes
        dtype, rate = peak_dtype(v), achieved_gflops(raw[v.hash][0].get("flops_per_step"), step_ms)
        square = (info.get("matmul_gflops") or {}).get(dtype)
        return dtype if rate and square and rate > square else None

    done = [v for v in vs if raw[v.hash] and raw[v.hash][0].get("status") in FINISHED]
    if not bc.timing_rounds or not done:
        return None
    return time_variants(out, done, bc.timing_rounds, bc.timing_steps_per_round, log=log, deadline_s=deadline_s,
                         max_ratio_ci=bc.max_ratio_ci, max_load_per_core=bc.max_load_per_core, gemm_peak_dtype=gemm_peak_dtype)


def add_timed_overhead(rec: dict, timing: dict | None) -> None:
    """trainwise's overhead over plain PyTorch from the paired rounds (control / baseline, median
    of per-round ratios), replacing the ratio of two unpaired medians; on a machine too busy to
    support it, no figure and the reason instead."""
    overhead = (timing or {}).get("baseline_overhead")
    if overhead is None:
        return
    rec["trainwise_overhead_vs_plain_pytorch"] = overhead["median"] - 1 if overhead["reliable"] else None
    rec["trainwise_overhead_ci95"] = [x - 1 for x in overhead["ci95"]] if overhead["reliable"] else None
    rec["trainwise_overhead_note"] = overhead["note"]


def timing_meta(timing: dict | None) -> dict | None:
    if timing is None:
        return None
    return {k: timing.get(k) for k in ("rounds", "rounds_planned", "steps_per_round", "reliable", "unreliable_reason", "cores", "statistic")}


def _device_words(info: dict) -> str:
    if info.get("device") == "cuda":
        return f"{info.get('gpu_name')} (cuda)"
    return f"{info.get('cpu_model')}, {info.get('cpu_cores')} cores, {info.get('torch_threads')} torch threads (cpu)"
