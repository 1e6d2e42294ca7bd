"""The timing phase of a bench: after training, every variant's step timed in interleaved rounds.

One persistent process per variant (`python -m trainwise.bench.timing_worker`: isolated as in
training, built as the trainer builds it), each blocked on a pipe until told "run k steps", so
only one variant computes at a time. After untimed warm-up steps in each process, round r runs k
steps of A, then of B, then of C, ...; the next round again A B C. Each speed ratio (variant /
fp32 control, control / plain PyTorch) is the median of the per-round paired ratios with a
distribution-free 95% interval (timing_stats.py), and the load around every round is recorded:
on a machine too busy to support a ratio the result says so instead of quoting one.

OUT/timing.json holds the result; OUT/variants/<label>-<hash>/timing.log each process's output.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from trainwise.bench.grid import Variant
from trainwise.bench.results import peak_dtype
from trainwise.bench.runner import RESULT, RUN
from trainwise.bench.timing_stats import (
    load_row,
    machine_verdict,
    ratio_summary,
    round_ratios,
    sample_load,
    usable_cores,
)
from trainwise.rundir import read_json, write_json

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETUP_TIMEOUT_S = 900  # building the workload and the prepared model (the numerics probe included)
REPLY_TIMEOUT_S = 300  # plus 20x the steps' expected time: a process silent longer is stuck
STATISTIC = (
    "per variant: median over rounds of (its median step time in the round / the fp32 control's in the same round); "
    "95% CI of that median from order statistics (binomial sign-test interval, scipy.stats.quantile_test)"
)


class TimingProcessError(RuntimeError):
    pass


class TimingProcess:
    """One variant's timing worker and its pipes."""

    def __init__(self, v: Variant, variant_dir: Path):
        self.v, self.dir = v, variant_dir
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
        cmd = [sys.executable, "-m", "trainwise.bench.timing_worker", str(variant_dir)]
        if v.kind == "trainwise" and (variant_dir / RUN).is_dir():
            cmd += ["--run-dir", str(variant_dir / RUN)]
        self.log = open(variant_dir / "timing.log", "w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=os.getcwd()
        )
        self.ready: dict = {}
        trained = variant_dir / RESULT
        self.expected_step_s = ((read_json(trained).get("median_step_ms") or 0) / 1e3) if trained.is_file() else 0.0

    def request(self, cmd: dict, timeout_s: float) -> dict:
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise TimingProcessError(self._gone()) from None
        return self.reply(timeout_s)

    def reply(self, timeout_s: float) -> dict:
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not readable:
            self.kill()
            raise TimingProcessError(f"no reply within {timeout_s:.0f} s: stopped")
        line = self.proc.stdout.readline()
        if not line:
            raise TimingProcessError(self._gone())
        try:
            out = json.loads(line)
        except ValueError:
            self.kill()
            raise TimingProcessError(f"a garbled reply: {line[:200]!r}") from None
        if "error" in out:
            raise TimingProcessError(out["error"])
        return out

    def run(self, steps: int, timed: bool) -> list[float]:
        out = self.request({"run" if timed else "warmup": steps}, REPLY_TIMEOUT_S + 20 * steps * self.expected_step_s)
        return out.get("step_ms", [])

    def _gone(self) -> str:
        code = self.proc.wait(timeout=30)
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"the timing process {how} (see {self.dir.name}/timing.log)"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def ask_to_quit(self) -> None:
        if self.proc.poll() is None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def close(self) -> None:
        self.ask_to_quit()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()


def drive_rounds(
    order: list[str],
    run,
    rounds: int,
    steps_per_round: int,
    warmup_steps: int,
    deadline_s: float | None = None,
    sample=sample_load,
    cores: int = 1,
    log=print,
    clock=time.monotonic,
) -> tuple[dict[str, list[list[float] | None]], list[dict], dict[str, str]]:
    """Warm up every variant, then run `rounds` rounds of `steps_per_round` steps of each variant in
    `order` (A B C A B C ...). `run(key, steps, timed)` returns the step times (ms) or raises.
    Stops after the current round once `deadline_s` (time.monotonic()) has passed. Returns the
    step times per variant per round (None where it did not run), the load around each round, and
    why a variant stopped being timed."""
    times: dict[str, list[list[float] | None]] = {k: [] for k in order}
    failed: dict[str, str] = {}
    alive = list(order)

    def attempt(key: str, steps: int, timed: bool) -> list[float] | None:
        try:
            return run(key, steps, timed)
        except (TimingProcessError, ValueError, OSError) as e:  # a dead, stuck or garbled process: the others go on
            failed[key] = str(e)
            alive.remove(key)
            return None

    def out_of_time() -> bool:
        return deadline_s is not None and clock() >= deadline_s

    for key in list(alive):
        if not out_of_time():
            attempt(key, warmup_steps, False)  # kernel selection, allocator, caches: never timed
    loads = []
    for r in range(rounds):
        if out_of_time():
            log(f"timing: the time budget ran out after {r} round(s)")
            break
        if not alive:
            break
        before = sample()
        for key in order:
            times[key].append(attempt(key, steps_per_round, True) if key in alive else None)
        loads.append({"round": r, **load_row(before, sample(), cores)})
    return times, loads, failed


def close_all(procs) -> None:
    """Ask every process to quit first, then wait: their exits overlap."""
    for p in procs:
        p.ask_to_quit()
    for p in procs:
        p.close()


def start_processes(out: Path, variants: list[Variant], log) -> tuple[dict[str, TimingProcess], dict[str, str]]:
    """Start every variant's process at once (set-up in parallel), then wait until each is ready."""
    procs = {v.hash: TimingProcess(v, out / "variants" / v.dir_name) for v in variants}
    failed = {}
    for h, p in list(procs.items()):
        try:
            p.ready = p.reply(SETUP_TIMEOUT_S)
        except TimingProcessError as e:
            failed[h] = f"could not be set up for timing: {e}"
            log(f"timing: {p.v.label}: {failed[h]}")
            p.close()
            del procs[h]
    return procs, failed


def time_variants(
    out: Path,
    variants: list[Variant],
    rounds: int,
    steps_per_round: int,
    warmup_steps: int = 2,
    log=print,
    deadline_s: float | None = None,
    max_ratio_ci: float = 0.10,
    max_load_per_core: float = 1.0,
    gemm_peak_dtype=None,
) -> dict:
    """Time the steps of `variants` (those whose training finished) in interleaved rounds; write
    and return OUT/timing.json's content (see `summarize`).

    `gemm_peak_dtype(variant, median_step_ms)` names the dtype in which to measure the peak on the
    variant's own matmul shapes (MFU's peak when the square probe does not bound the model), or
    None to skip it; by default every timed variant is measured in its policy's dtype."""
    # Over 60 lines on purpose: the timing phase in order (start the processes, warm-up, rounds, GEMM peaks, close,
    # summarize), with its logging; its parts are functions already.
    gemm_peak_dtype = gemm_peak_dtype or (lambda v, ms: peak_dtype(v))
    out = Path(out)
    t0 = time.monotonic()
    log(
        f"timing: {len(variants)} variants, {rounds} interleaved rounds x {steps_per_round} steps (after "
        f"{warmup_steps} warm-up steps each)"
    )
    procs, failed = start_processes(out, variants, log)
    cores = usable_cores()
    peaks: dict[str, dict] = {}
    wall_s = {"setup": time.monotonic() - t0}
    try:
        order = [v.hash for v in variants if v.hash in procs]
        times, loads, stopped = drive_rounds(
            order,
            lambda h, k, timed: procs[h].run(k, timed),
            rounds,
            steps_per_round,
            warmup_steps,
            deadline_s,
            cores=cores,
            log=log,
        )
        failed.update(stopped)
        wall_s["rounds"] = time.monotonic() - t0 - wall_s["setup"]
        for v in variants:  # the model's own GEMM shapes: MFU's peak when the square probe does not represent them
            flat = [ms for r in times.get(v.hash, []) if r for ms in r]
            dtype = gemm_peak_dtype(v, median(flat)) if flat and v.hash not in failed else None
            if dtype and (deadline_s is None or time.monotonic() < deadline_s):
                try:
                    peaks[v.hash] = {
                        "peak_dtype": dtype,
                        **procs[v.hash].request({"gemm_peak": dtype}, REPLY_TIMEOUT_S),
                    }
                except (TimingProcessError, ValueError, OSError) as e:
                    log(f"timing: {v.label}: GEMM peak not measured: {e}")
    finally:
        close_all(procs.values())
    result = summarize(
        variants,
        times,
        loads,
        failed,
        peaks,
        {h: p.ready for h, p in procs.items()},
        cores,
        max_ratio_ci,
        max_load_per_core,
    )
    wall_s["total"] = time.monotonic() - t0  # what the phase cost: for planning rounds within a time budget
    result.update(
        {
            "rounds_planned": rounds,
            "steps_per_round": steps_per_round,
            "warmup_steps": warmup_steps,
            "order": [v.label for v in variants if v.hash in times],
            "wall_s": wall_s,
        }
    )
    write_json(out / "timing.json", result)
    log("timing: " + (result["unreliable_reason"] or f"{result['rounds']} rounds, reliable"))
    return result


def summarize(
    variants: list[Variant],
    times: dict,
    loads: list[dict],
    failed: dict[str, str],
    peaks: dict,
    ready: dict,
    cores: int,
    max_ratio_ci: float,
    max_load_per_core: float,
) -> dict:
    """The timing result: per variant hash its step times and speed ratio to the control, the
    baseline overhead, the load per round, and whether the machine could support any ratio."""
    # Over 60 lines on purpose: one dict per variant built field by field, then the paired ratios; it only assembles
    # what timing_stats computes.
    control = next((v for v in variants if v.is_control), None)
    baseline = next((v for v in variants if v.kind == "baseline"), None)
    threads = [r.get("threads", 1) for r in ready.values()] or [1]
    reason = machine_verdict(loads, max(threads), cores, max_load_per_core)
    per: dict[str, dict] = {}
    for v in variants:
        rounds = times.get(v.hash, [])
        flat = [ms for r in rounds if r for ms in r]
        row = {
            "label": v.label,
            "kind": v.kind,
            "is_control": v.is_control,
            "timed": bool(flat),
            "step_ms": rounds,
            "round_median_ms": [median(r) if r else None for r in rounds],
            **{k: ready.get(v.hash, {}).get(k) for k in ("device", "threads", "units_per_step", "throughput_unit")},
        }
        if flat:
            row.update(
                {
                    "median_step_ms": median(flat),
                    "min_step_ms": min(flat),
                    "max_step_ms": max(flat),
                    "timed_steps": len(flat),
                }
            )
        if v.hash in failed:
            row["reason"] = failed[v.hash]
        row.update(peaks.get(v.hash, {}))
        if control and v.kind == "trainwise" and v is not control:
            row["speed_ratio_vs_control"] = ratio_summary(
                round_ratios(rounds, times.get(control.hash, [])),
                reason,
                max_ratio_ci,
                f"step time of {v.label} / the fp32 control",
            )
        per[v.hash] = row
    overhead = None
    if control and baseline:
        overhead = ratio_summary(
            round_ratios(times.get(control.hash, []), times.get(baseline.hash, [])),
            reason,
            max_ratio_ci,
            "step time of the fp32 control / plain PyTorch",
        )
    return {
        "variants": per,
        "baseline_overhead": overhead,
        "load": loads,
        "cores": cores,
        "rounds": len(loads),
        "reliable": reason is None,
        "unreliable_reason": reason,
        "statistic": STATISTIC,
    }
