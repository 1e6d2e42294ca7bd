"""`run_bench`: plan the variants, run them in subprocesses, compare, recommend, report."""

from __future__ import annotations

from pathlib import Path

from trainwise.bench.recommend import recommend
from trainwise.bench.report import render_html, render_markdown
from trainwise.bench.results import add_quality, add_time_to_target, aggregate
from trainwise.bench.runner import FINISHED, claim_out_dir, plan, run_variants
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
              repeats: int | None = None, cost_per_hour: float | None = None, log=print) -> dict:
    """Run the bench into `out`; returns {'results', 'recommendation', 'report'}."""
    sets = list(overrides)
    if repeats is not None:
        sets.append(f"bench.repeats={repeats}")
    if cost_per_hour is not None:
        sets.append(f"bench.cost_per_hour={cost_per_hour}")
    base, vs = plan(config, list(grid), list(variants), sets)  # every variant validated before anything runs
    out = Path(out)
    claim_out_dir(out, base, vs)
    info = peak_info(base)
    bc = base.bench
    log(f"bench: {len(vs)} variants x {bc.repeats} repeat(s) into {out}")
    raw = run_variants(out, vs, bc.repeats, log)
    rows = [aggregate(v, raw[v.hash], info, bc.cost_per_hour) for v in vs]
    dirs = {v.hash: out / "variants" / v.dir_name for v in vs}
    add_quality(rows, dirs, bc.tolerance, bc.confidence)
    control = next(r for r in rows if r["is_control"])
    target = bc.target_val_loss or ((control["final_val_loss"] or 0) * (1 + bc.tolerance) if control["status"] in FINISHED else 0.0)
    add_time_to_target(rows, target)
    rec = recommend(rows, bc.memory_budget_gib, bc.tolerance, info.get("device", "cpu"))
    meta = {"config": str(config), "overrides": sets, "device": _device_words(info), "matmul_gflops": info.get("matmul_gflops"),
            "target_val_loss": target, "tolerance": bc.tolerance, "repeats": bc.repeats}
    write_json(out / "results.json", rows)
    write_json(out / "recommendation.json", {**rec, "meta": meta})
    write_atomic(out / "report.md", render_markdown(rows, rec, meta))
    write_atomic(out / "report.html", render_html(rows, rec, meta))
    return {"results": rows, "recommendation": rec, "report": out / "report.html"}


def _device_words(info: dict) -> str:
    if info.get("device") == "cuda":
        return f"{info.get('gpu_name')} (cuda)"
    return f"{info.get('cpu_model')}, {info.get('cpu_cores')} cores, {info.get('torch_threads')} torch threads (cpu)"
