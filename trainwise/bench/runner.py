"""The training phase of a bench: every variant trained once, each in its own process, in order
(the control first), while the runner watches each running worker: progress, pruning, the time budget.

OUT/
  bench.json                 what bench this folder holds (base config hash), the variants
  plan.json                  with a time budget: the machine, the budget and the plan (trainwise.bench.budget)
  variants/<label>-<hash>/   variant.json, config.toml, run/ (the run directory), run.json (the worker's
                             result), run.log (its stdout and stderr), predictions.parquet, timing.log
  timing.json  results.json  recommendation.json  report.md  report.html

A variant whose run.json says it completed for the same config hash, or was pruned on the same
machine under the same bench.prune_slowdown, is never trained again, so an interrupted bench picks
up where it stopped and nothing finished is lost. (Speeds come from the timing phase after
training, trainwise.bench.timing: a variant is trained once, never repeated.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from trainwise.bench.grid import Variant, control_seeds, expand, identity
from trainwise.bench.progress import BenchProgress
from trainwise.bench.prune import ControlSteps, Finished, StepWatch, prune_evidence, prune_reason
from trainwise.bench.timing_stats import usable_cores
from trainwise.config import build_config, config_to_toml, read_toml
from trainwise.errors import ConfigError
from trainwise.rundir import read_json, write_json
from trainwise.runstatus import RunStatus

FINISHED = tuple(s.value for s in RunStatus if s.finished)  # runs that ended by themselves
POLL_S = 0.25  # how often a running worker's metrics.jsonl is read (a stat and a short read)
# The bench logs every step, so that pruning sees each step's time as it happens (a --set wins).
BENCH_SETS = ["train.log_every=1"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUN, RESULT, LOG = "run", "run.json", "run.log"  # in each variant's folder


def load_base(config_path: str | Path) -> dict:
    return read_toml(config_path, "config file", "a TOML recipe such as configs/lm-tiny.toml")


def plan(config_path, grid: list[str], variants: list[str], overrides: list[str]) -> tuple[object, list[Variant]]:
    """The base config and every validated variant, plus the control's other seeds (tagged:
    grid.seed_hashes) and the baseline row when bench.baseline."""
    data = load_base(config_path)
    sets = BENCH_SETS + list(overrides)
    base = build_config(data, sets, str(config_path), unused="keep")  # the bench's own rule: grid.expand
    out = expand(grid, variants, data, sets, str(config_path))
    out += control_seeds(out, base.bench.control_seeds, data, sets, str(config_path))
    if base.bench.baseline:
        control = next(v for v in out if v.is_control)
        h = hashlib.sha256(f"baseline:{control.hash}".encode()).hexdigest()[:16]
        out.append(Variant({}, "plain PyTorch (fp32)", control.cfg, h, kind="baseline"))
    return base, out


def claim_out_dir(out: Path, base, variants: list[Variant]) -> None:
    """Refuse a folder holding another bench's results (or anything else); record this bench."""
    ident = identity(base)
    marker = out / "bench.json"
    if marker.is_file():
        old = read_json(marker)
        if {k: old.get(k) for k in ident} != ident:
            raise ConfigError(
                f"--out {out} holds the results of another bench (base config hash {old.get('base_config_hash')}, "
                f"this one {ident['base_config_hash']}); choose another --out, or delete that folder to replace it"
            )
        known = {v["config_hash"]: v for v in old.get("variants", [])}
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} is not empty and holds no bench.json: it is not a bench folder; choose another --out"
        )
    else:
        known = {}
    known.update({v.hash: v.to_dict() for v in variants})
    write_json(marker, {**ident, "variants": list(known.values())})


def prepare_variant_dir(out: Path, v: Variant) -> Path:
    d = out / "variants" / v.dir_name
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "variant.json", v.to_dict())
    (d / "config.toml").write_text(config_to_toml(v.cfg))
    return d


def finished_run(d: Path, v: Variant, keep_pruned: dict | None = None) -> dict | None:
    """The result of a run that need not run again: it completed with the same config; or it was
    pruned on the same machine under the same bench.prune_slowdown (`keep_pruned`: {'machine', 'prune_slowdown'})."""
    p = d / RESULT
    if not p.is_file():
        return None
    try:
        r = read_json(p)
    except Exception:
        return None
    if r.get("config_hash") != v.hash:
        return None
    if r.get("status") in FINISHED:
        return r
    if (
        r.get("status") == "pruned"
        and keep_pruned
        and r.get("machine") == keep_pruned["machine"]
        and (r.get("prune") or {}).get("prune_slowdown") == keep_pruned["prune_slowdown"]
    ):
        return r
    return None


def worker_env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace_s`."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_worker(d: Path, v: Variant, quality: bool, check=None) -> dict:
    """Train one variant in a fresh Python process; a crash becomes a result too.

    `check()`, called every POLL_S while the worker runs, may return a result (e.g. status
    'pruned' with its evidence): the worker is then stopped and that result recorded."""
    shutil.rmtree(d / RUN, ignore_errors=True)  # an unfinished attempt: nothing finished is lost
    result_path = d / RESULT
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "trainwise.bench.worker", str(d)] + (["--quality"] if quality else [])
    log = d / LOG
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=worker_env(), cwd=os.getcwd())
        try:
            while proc.poll() is None:
                try:
                    proc.wait(POLL_S)
                except subprocess.TimeoutExpired:
                    pass
                stop = check() if check and proc.poll() is None else None
                if stop is not None:
                    stop_process(proc)
                    result = {**stop, "config_hash": v.hash}
                    write_json(result_path, result)
                    return result
        except BaseException:  # Ctrl-C or an error here: the worker must not outlive the bench
            stop_process(proc)
            raise
    if result_path.is_file():
        return read_json(result_path)
    tail = " | ".join(line for line in log.read_text(errors="replace").splitlines()[-3:] if line.strip())
    if proc.returncode < 0:
        reason = f"the worker process was killed by signal {-proc.returncode}" + (
            " (SIGKILL: often the out-of-memory killer)" if proc.returncode == -9 else ""
        )
    else:
        reason = f"the worker process exited with code {proc.returncode}"
    result = {
        "status": "crashed",
        "reason": reason + (f"; last output: {tail[-300:]}" if tail else ""),
        "config_hash": v.hash,
        "returncode": proc.returncode,
    }
    write_json(result_path, result)
    return result


@dataclass
class Supervision:
    """What the runner needs to prune, keep to a deadline and show progress (all optional)."""

    prune_slowdown: float = 0.0  # 0: never prune
    machine: dict = field(default_factory=dict)  # the fingerprint a pruned result is kept for on a rerun
    device: str = "cpu"
    deadline: float | None = None  # time.monotonic() by which training must end
    predicted_s: dict = field(default_factory=dict)  # config hash -> predicted seconds of its run
    unprunable: set = field(default_factory=set)  # config hashes never pruned (emulated fp8: there for its quality)
    max_load_per_core: float = float("inf")  # a prune decided under more load from other processes says so
    progress: BenchProgress | None = None


def run_variants(out: Path, variants: list[Variant], log=print, sup: Supervision | None = None) -> dict[str, dict]:
    """Train every variant once, in the given order (the control first). Returns {config hash: result}."""
    sup = sup or Supervision()
    dirs = {v.hash: prepare_variant_dir(out, v) for v in variants}
    results: dict[str, dict] = {}
    finished: list[Finished] = []
    control: ControlSteps | None = None
    keep = {"machine": sup.machine, "prune_slowdown": sup.prune_slowdown}
    ran_s = predicted_ran_s = 0.0  # how the runs so far compared with their predictions: scales the rest
    for n, v in enumerate(variants, 1):
        d = dirs[v.hash]
        done = finished_run(d, v, keep)
        predicted = sup.predicted_s.get(v.hash)
        if sup.progress:
            left = [sup.predicted_s.get(w.hash, 0.0) for w in variants[n:]]
            sup.progress.start_run(
                n, v.label, v.cfg.train.steps, predicted if not done else 0.0, sum(left) if sup.predicted_s else None
            )
        t0 = time.perf_counter()
        if done:
            r, how = done, " (finished earlier, skipped)"
        elif (
            sup.deadline is not None
            and predicted
            and time.monotonic() + predicted * _scale(ran_s, predicted_ran_s) > sup.deadline
        ):
            need = predicted * _scale(ran_s, predicted_ran_s)
            r = {
                "status": "not run",
                "reason": (
                    f"the time budget does not fit it: about {need:.0f} s needed, "
                    f"{max(0.0, sup.deadline - time.monotonic()):.0f} s left"
                ),
            }
            how = ""
        else:
            prunable = (
                sup.prune_slowdown
                and v.kind == "trainwise"
                and not v.is_control
                and v.hash not in sup.unprunable
                and control
            )
            check = make_check(d / RUN, v, sup, control if prunable else None, list(finished))
            r = run_worker(d, v, quality=v.kind in ("trainwise", "control-seed"), check=check)
            how = f" in {time.perf_counter() - t0:.0f} s"
            if predicted:
                ran_s, predicted_ran_s = ran_s + time.perf_counter() - t0, predicted_ran_s + predicted
        if sup.progress:
            sup.progress.end_run(skipped=bool(done) or r["status"] == "not run")
            sup.progress.clear()
        results[v.hash] = r
        if r.get("status") in FINISHED and v.kind == "trainwise":
            finished.append(Finished(v.label, r.get("median_step_ms") or float("inf"), r.get("peak_memory_bytes")))
            if v.is_control and r.get("median_step_ms"):
                control = ControlSteps.from_metrics(d / RUN / "metrics.jsonl", r["median_step_ms"])
        log(f"[{n}/{len(variants)}] {v.label}: {describe(r)}{how}")
    if sup.progress:
        sup.progress.close()
    return results


def make_check(run_dir: Path, v: Variant, sup: Supervision, control: ControlSteps | None, finished: list[Finished]):
    """The poll of one running worker: progress, pruning (when `control`), the deadline."""
    watch = StepWatch(run_dir / "metrics.jsonl", v.cfg.train)

    def check() -> dict | None:
        watch.poll()
        if sup.progress:
            sup.progress.update(watch.last_step)
        if control:
            evidence = prune_evidence(
                watch.steps, watch.running_ms(), control, watch.memory_bytes, finished, sup.prune_slowdown
            )
            if evidence:
                return pruned(evidence, sup, watch)
        if sup.deadline is not None and time.monotonic() > sup.deadline:
            return stop_at_deadline(watch, v, sup, control, finished)
        return None

    return check


def pruned(evidence: dict, sup: Supervision, watch: StepWatch, why: str = "") -> dict:
    """The pruned result, with the load it was decided under: on a busy machine the steps it saw may
    have been slowed by other work, and the reason says so (as the timing phase does for its ratios)."""
    cores = usable_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    evidence = {**evidence, "loadavg": load, "cores": cores}
    others = load - min(watch.tc.threads or cores, cores) if load is not None else 0.0
    if others / cores > sup.max_load_per_core:
        why += (
            f"; measured while the machine was busy (load {load:.1f} on {cores} cores, over bench.max_load_per_core): "
            "a rerun on a quieter machine may keep it"
        )
    return {
        "status": "pruned",
        "reason": prune_reason(evidence, sup.device) + why,
        "prune": evidence,
        "machine": sup.machine,
        "steps": watch.last_step,
        "peak_memory_bytes": watch.memory_bytes,
    }


def stop_at_deadline(
    watch: StepWatch, v: Variant, sup: Supervision, control: ControlSteps | None, finished: list[Finished]
) -> dict:
    """A run still going when the budget ends: pruned if what it measured already meets the rule
    (one step is enough now: there will be no second), else stopped with what it measured."""
    if control:
        evidence = prune_evidence(
            watch.steps, watch.running_ms(), control, watch.memory_bytes, finished, sup.prune_slowdown, min_steps=1
        )
        if evidence:
            return pruned(evidence, sup, watch, "; stopped when the time budget ran out")
    timed = watch.timed_ms
    per_step = (
        (
            f" ({median(timed) / 1e3:.2f} s a step"
            + (f", {median(timed) / control.median_ms:.1f}x the control's)" if control else ")")
        )
        if timed
        else ""
    )
    return {
        "status": "stopped",
        "reason": f"the time budget ran out after {watch.last_step} of {v.cfg.train.steps} steps{per_step}",
        "steps": watch.last_step,
    }


def _scale(actual_s: float, predicted_s: float) -> float:
    """Actual over predicted seconds of the runs so far (1 before any): the machine's pace against the plan."""
    return actual_s / predicted_s if predicted_s else 1.0


def describe(r: dict) -> str:
    if r.get("status") not in FINISHED:
        return f"{r.get('status')}: {r.get('reason')}"
    ms, val = r.get("median_step_ms"), r.get("final_val_loss")
    return f"{ms:.1f} ms/step, val loss {val:.4f}" if ms is not None and val is not None else r.get("status")
