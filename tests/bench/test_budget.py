"""A bench with a time budget on a workload whose fp16 variant is deliberately slow (tests/bench/
slow_workload.py sleeps 1 s per forward under fp16 autocast, 0.04 s otherwise): the steps are
planned from measured speed, the slow variant is pruned from its own measured steps (at the end of
its 2nd step) and not timed, the timing phase runs within what the budget leaves, the whole bench
stays within its budget, an interrupted bench loses nothing, and two benches of the same machine
give the same recommendation although fp32 and bf16-mixed are a near-tie in speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.bench.cached_peak import cached_peak_info
from trainwise.bench.bench import run_bench
from trainwise.bench.grid import Variant
from trainwise.bench.plan import step_ladder
from trainwise.bench.runner import finished_run
from trainwise.cli import main
from trainwise.errors import ConfigError

RECIPE_STEPS = 60  # unpruned, the fp16 variant alone would take 60 x 1 s
SLOW_TOML = f"""
[workload]
name = "entry"
entry = "tests.bench.slow_workload:make"

[train]
steps = {RECIPE_STEPS}
micro_batch_size = 32
global_batch_size = 32
warmup_steps = 6
eval_every = 30
eval_batches = 4
checkpoint_every = 0
threads = 1

[bench]
baseline = false
timing_rounds = 6
timing_steps_per_round = 1

[log]
progress = false
mlflow = false
"""
GRID = ["precision.policy=fp32,bf16-mixed,fp16-mixed"]
BUDGET_MIN = 5.0  # roomy: the runs need about a minute; planning against a binding budget is tested in test_plan.py


def by_label(rows):
    return {r["label"]: r for r in rows}


def cli(*args, **kw):
    """`trainwise ARGS` in its own process group (as a terminal runs it), with the cached matmul peak."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench.cached_peak", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a terminal's foreground job: Ctrl-C is not ignored even when the suite itself was started in
        # the background by a non-interactive shell (which ignores SIGINT for it, and children inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kw,
    )


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    """An interrupted bench, the same bench rerun to the end, and a second bench into another folder."""
    mp = pytest.MonkeyPatch()
    mp.setattr("trainwise.bench.bench.peak_info", cached_peak_info)
    # The interrupted bench runs in a fresh process, its rerun in this one: the plan is reused only on
    # the same machine fingerprint, torch threads included, and a test run earlier in this process may
    # have set other threads
    threads = torch.get_num_threads()
    torch.set_num_threads(fresh_process_threads())
    try:
        yield _benches(tmp_path_factory)
    finally:
        mp.undo()
        torch.set_num_threads(threads)


def fresh_process_threads() -> int:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True)
    return int(out.stdout)


def _benches(tmp_path_factory):
    d = tmp_path_factory.mktemp("budget")
    config = d / "slow.toml"
    config.write_text(SLOW_TOML)
    out = d / "a"
    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once the control has finished
    proc = cli("bench", str(config), "--grid", GRID[0], "--budget-min", str(BUDGET_MIN), "--out", str(out))
    deadline = time.monotonic() + 240
    while not list(out.glob("variants/fp32-*/run.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    control_result = next(out.glob("variants/fp32-*/run.json"))
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    interrupted = {
        "returncode": proc.returncode,
        "stderr": err,
        "pgid": proc.pid,
        "control_mtime": control_result.stat().st_mtime_ns,
        "control_result": control_result,
    }
    lines: list[str] = []
    t0 = time.monotonic()
    first = run_bench(config, GRID, [], [], out, budget_min=BUDGET_MIN, log=lines.append)
    wall_s = time.monotonic() - t0
    # the same bench again, into another folder (without a budget: the recipe's steps, which the roomy budget planned
    # too)
    second = run_bench(config, GRID, [], [], d / "b", log=[].append)
    return {
        "config": config,
        "out": out,
        "interrupted": interrupted,
        "first": first,
        "lines": lines,
        "wall_s": wall_s,
        "second": second,
    }


@pytest.mark.slow
def test_interrupted_bench_leaves_no_worker_and_loses_nothing(benches):
    it = benches["interrupted"]
    assert it["returncode"] == 130 and "interrupted" in it["stderr"]
    with pytest.raises(ProcessLookupError):
        os.killpg(it["pgid"], 0)  # no worker outlived the bench
    # the rerun reused the plan and the finished control, and ran the rest
    lines = benches["lines"]
    assert any(line.startswith("plan: ") and "reused" in line for line in lines), lines
    assert any(line.startswith("[1/4] fp32:") and "finished earlier, skipped" in line for line in lines), lines
    assert it["control_result"].stat().st_mtime_ns == it["control_mtime"]


@pytest.mark.slow
def test_steps_are_planned_and_the_bench_fits_its_budget(benches):
    assert benches["wall_s"] <= BUDGET_MIN * 60
    meta = benches["first"]["meta"]
    plan = json.loads((benches["out"] / "plan.json").read_text())["plan"]
    assert plan["steps"] in step_ladder(RECIPE_STEPS) and meta["steps"] == plan["steps"]
    assert plan["pruned_predicted"] == [] or plan["pruned_predicted"] == ["fp16-mixed"]
    for path in benches["out"].glob("variants/*/variant.json"):
        if "probe" not in path.parent.name and json.loads(path.read_text())["config_hash"] in {
            r["config_hash"] for r in benches["first"]["results"]
        }:
            assert (
                f"steps = {plan['steps']}  #" in (path.parent / "config.toml").read_text()
            )  # the same steps for every variant


@pytest.mark.slow
def test_the_slow_variant_is_pruned_from_its_own_steps(benches):
    rows = by_label(benches["first"]["results"])
    fp16 = rows["fp16-mixed"]
    assert fp16["status"] == "pruned" and fp16["quality_verdict"] == "not compared"
    ev = fp16["pruned"]
    # pruned as soon as its memory was known: its warm-up and memory-measured steps, each >= 4x the control's same step
    assert (
        ev["step_kinds"][:2] == ["warm-up", "memory-measured"]
        and min(ev["step_ratios"][-2:]) >= 4
        and ev["slowdown"] >= 4
    )
    assert fp16["steps"] <= 3 and ev["no_saving_over"] == "bf16-mixed"
    assert fp16["reason"].startswith(
        f"{ev['slowdown']:.0f}x slower than fp32 on this cpu (measured over {ev['observed_steps']} steps"
    )
    timing = json.loads((benches["out"] / "timing.json").read_text())
    assert timing["order"] == ["fp32", "bf16-mixed"]  # neither the pruned variant nor the control's other seed is timed
    rec = benches["first"]["recommendation"]
    assert "fp16-mixed: pruned: " in {r["label"]: r["reason"] for r in rec["rejected"]}["fp16-mixed"]
    report = (benches["out"] / "report.md").read_text()
    assert (
        "| fp16-mixed | pruned |" in report and "samples/s" in report and "tokens/s" not in report
    )  # issue 14: a tabular unit
    # a rerun on this machine keeps the pruned result; on another machine it would run again
    d = next(benches["out"].glob("variants/fp16-mixed-*"))
    meta = json.loads((d / "variant.json").read_text())
    v = Variant(meta["overrides"], meta["label"], None, meta["config_hash"])
    record = json.loads((d / "run.json").read_text())
    assert finished_run(d, v, {"machine": record["machine"], "prune_slowdown": 4.0})["status"] == "pruned"
    assert (
        finished_run(d, v, {"machine": {**record["machine"], "cpu_model": "another CPU"}, "prune_slowdown": 4.0})
        is None
    )
    assert finished_run(d, v, {"machine": record["machine"], "prune_slowdown": 40.0}) is None


@pytest.mark.slow
def test_noise_floor_is_measured_and_shown(benches):
    rows = by_label(benches["first"]["results"])
    seed = rows["fp32 control (seed 1)"]
    assert seed["status"] == "completed" and seed["quality_verdict"] == "noise floor" and seed["tokens_per_s"] is None
    floor = benches["first"]["meta"]["noise_floor"]
    assert (
        floor["measured"]
        and floor["seeds"] == 2
        and floor["metric"] == "log_loss"
        and floor["primary_metric"] == "accuracy"
    )
    per_seed = floor["per_metric"]["log_loss"]["per_seed"]
    assert floor["per_metric"]["log_loss"]["floor"] == pytest.approx(abs(per_seed[1] - per_seed[0]))
    assert floor["margin"] == pytest.approx(
        0.02 * rows["fp32"]["final_val_loss"] + floor["per_metric"]["log_loss"]["floor"]
    )
    bf16 = rows["bf16-mixed"]
    assert bf16["quality_verdict"] in ("pass", "inconclusive", "fail") and bf16["quality_margin"] == pytest.approx(
        floor["margin"]
    )
    report = (benches["out"] / "report.md").read_text()
    assert (
        "noise floor: 2 seeds of the fp32 control differ by" in report
        and "| fp32 control (seed 1) [noise floor] | completed | not timed |" in report
    )


@pytest.mark.slow
def test_two_benches_give_the_same_recommendation(benches):
    a, b = benches["first"]["recommendation"], benches["second"]["recommendation"]
    assert benches["first"]["meta"]["steps"] == benches["second"]["meta"]["steps"] == RECIPE_STEPS
    # fp32 and bf16-mixed take the same 20 ms sleep per step: which one measures faster is noise, the answer is not
    assert a["label"] == b["label"] == "fp32"
    assert by_label(benches["second"]["results"])["fp16-mixed"]["status"] == "pruned"


def test_bad_budget_and_bench_fields_are_one_clear_error(capsys, tmp_path):
    for argv, expected in (
        (["demo", "--budget-min", "0"], "--budget-min 0: expected a number of minutes > 0"),
        (["demo", "--budget-min", "-2"], "--budget-min -2: expected a number of minutes > 0"),
        (["bench", "configs/lm-tiny.toml", "--grid", "precision.policy=fp32", "--budget-min", "-1"], "--budget-min -1"),
        (
            ["bench", "configs/lm-tiny.toml", "--grid", "precision.policy=fp32", "--set", "bench.control_seeds=0"],
            "bench.control_seeds = 0: must be >= 1",
        ),
        (
            ["bench", "configs/lm-tiny.toml", "--grid", "precision.policy=fp32", "--set", "bench.prune_slowdown=1"],
            "bench.prune_slowdown = 1.0: must be > 1",
        ),
    ):
        code = main([*argv, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (
            argv,
            err,
        )
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_budget_too_small_for_the_control_names_the_minimum(benches, tmp_path, monkeypatch):
    monkeypatch.setattr("trainwise.bench.bench.peak_info", cached_peak_info)
    with pytest.raises(ConfigError) as e:
        run_bench(benches["config"], GRID, [], [], tmp_path / "o", budget_min=0.05, log=[].append)
    msg = str(e.value)
    assert "time budget 0.05 min is too small for this machine" in msg and "s a step" in msg
    assert float(msg.split("--budget-min ")[1].split()[0]) > 0.05
