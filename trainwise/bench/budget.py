"""The speed probe and the plan of a bench with a time budget, kept in OUT/plan.json.

A rerun into the same folder, on the same machine with the same budget, reuses the plan (the same
steps, so every finished variant is skipped); on another machine, or with another budget, it
probes and plans again (docs/bench.md, "Time budget").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from trainwise.bench.grid import Variant, variant_hash
from trainwise.bench.plan import PROBE_STEPS, BudgetPlan, Probe, plan_budget
from trainwise.bench.prune import is_timed_row
from trainwise.bench.runner import FINISHED, LOG, RUN, prepare_variant_dir, run_worker
from trainwise.bench.timing_stats import usable_cores
from trainwise.config import build_config
from trainwise.errors import ConfigError
from trainwise.rundir import read_json, write_json

PROBE_SETS = [
    f"train.steps={PROBE_STEPS}",
    "train.warmup_steps=1",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.log_every=1",
    "precision.policy=fp32",
]


def machine_fingerprint(info: dict) -> dict:
    """What makes two measurements comparable: the same device, CPU and threads."""
    return {k: info.get(k) for k in ("device", "gpu_name", "cpu_model", "cpu_cores", "torch_threads")}


def probe_speed(
    out: Path, data: dict, sets: list[str], source: str, limit_s: float, spent_s: float, log=print
) -> Probe:
    """Train the fp32 control PROBE_STEPS steps in a worker. The probe may overrun a small budget
    (so that the error can say how much is needed), but not by more than `limit_s`."""
    cfg = build_config(data, list(sets) + PROBE_SETS, source)
    v = Variant({"probe": "speed"}, "fp32 control (speed probe)", cfg, variant_hash(cfg), kind="probe")
    d = prepare_variant_dir(out, v)
    t0 = time.monotonic()

    def too_long():
        if time.monotonic() - t0 > limit_s:
            return {"status": "stopped", "reason": f"the speed probe ran past {limit_s:.0f} s"}
        return None

    result = run_worker(d, v, quality=False, check=too_long)
    wall_s = time.monotonic() - t0
    if result.get("status") == "stopped":
        raise ConfigError(
            f"time budget too small for this machine: the fp32 control's {PROBE_STEPS}-step speed probe alone had not "
            f"finished after {wall_s:.0f} s, so the bench needs more than {(spent_s + wall_s) / 60:.1f} min; give a "
            "larger --budget-min"
        )
    if result.get("status") not in FINISHED:
        raise ConfigError(
            f"the fp32 control's speed probe did not finish ({result.get('status')}: {result.get('reason')}); "
            f"see {d / LOG}"
        )

    rows = [json.loads(line) for line in (d / RUN / "metrics.jsonl").read_text().splitlines() if line.strip()]
    probe = Probe.from_run(
        wall_s, [r["step_ms"] for r in rows if "step_ms" in r], [r["step_ms"] for r in rows if is_timed_row(r)]
    )
    log(
        f"speed probe: the fp32 control takes {probe.step_s:.2f} s a step and {probe.fixed_s:.0f} s a run besides its "
        "steps"
    )
    return probe


def load_plan(out: Path, ident: dict) -> BudgetPlan | None:
    """The plan in OUT/plan.json when it was made for `ident` (machine, budget, base config, variants)."""
    p = out / "plan.json"
    if not p.is_file():
        return None
    try:
        d = read_json(p)
        if {k: d.get(k) for k in ident} != ident:
            return None
        return BudgetPlan(**d["plan"])
    except Exception:  # unreadable, or written by another version of the planner: plan again
        return None


def plan_for_budget(
    out: Path,
    data: dict,
    sets: list[str],
    source: str,
    base,
    variants: list[Variant],
    info: dict,
    t_start: float,
    log=print,
) -> BudgetPlan:
    """The plan for base.bench.budget_min minutes counted from `t_start` (time.monotonic()):
    reused from OUT/plan.json when it was made on this machine for this budget, else measured."""
    bc = base.bench
    budget_s = bc.budget_min * 60
    ident = {
        "machine": machine_fingerprint(info),
        "budget_min": bc.budget_min,
        "base_config_hash": variant_hash(base),
        "variants": sorted(v.hash for v in variants),
    }
    plan = load_plan(out, ident)
    if plan is not None:
        log(f"plan: {plan.steps} steps a variant, reused from {out / 'plan.json'} (same machine and budget)")
        return plan
    spent = time.monotonic() - t_start
    probe = probe_speed(out, data, sets, source, max(budget_s - spent, 60.0), spent, log)
    plan = plan_budget(budget_s, time.monotonic() - t_start, probe, base.train, variants, info, bc, usable_cores())
    write_json(out / "plan.json", {**ident, "plan": plan.to_dict()})
    log(
        f"plan: {plan.steps} steps a variant to fit {bc.budget_min:g} min"
        + (f" (predicted to be pruned: {', '.join(plan.pruned_predicted)})" if plan.pruned_predicted else "")
        + (f"; {plan.note}" if plan.note else "")
    )
    return plan
