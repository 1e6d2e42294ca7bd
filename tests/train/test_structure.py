"""How the training core is put together (issue 19): the loop shows the update, the estimator runs
the trainer's step, health only observes, train/ has no import cycle, and the config's choices are
the registries' names."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
from pathlib import Path

import torch
from torch import nn

from tests.train.memory_fixtures import tiny_cfg
from trainwise import config
from trainwise.config import PrecisionConfig
from trainwise.runstatus import RunStatus
from trainwise.train import ac, estimate, loop, precision
from trainwise.train.health import HealthMonitor
from trainwise.train.setup import Prepared
from trainwise.workloads.build import build_workload

ROOT = Path(__file__).resolve().parents[2]


def _code_stats():
    spec = importlib.util.spec_from_file_location("code_stats", ROOT / "scripts" / "code_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scan(ROOT / "trainwise")


def test_no_import_cycle_involves_train_and_train_imports_its_own_modules_at_the_top():
    stats = _code_stats()
    assert [c for c in stats["cycles"] if any(m.startswith("trainwise.train.") for m in c)] == []
    for path in (ROOT / "trainwise" / "train").glob("*.py"):
        if path.name in ("memory_commands.py", "commands.py"):  # CLI verbs: torch (~2 s) only when the verb runs
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef):
                lazy = [
                    n
                    for n in ast.walk(fn)
                    if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("trainwise")
                ]
                assert lazy == [], f"{path.name}:{fn.name} imports a trainwise module inside the function"


def test_the_loop_shows_the_update_and_stays_short():
    src = inspect.getsource(loop.train)
    assert "optimizer.step()" in src and "scaler.step(optimizer)" in src
    assert len(src.splitlines()) <= 80 + 3  # the function, plus the comment above it and its noqa line


def test_the_estimator_runs_the_trainers_step(monkeypatch):
    calls = []
    real = estimate.train_step
    monkeypatch.setattr(estimate, "train_step", lambda parts, step: calls.append(step) or real(parts, step))
    cfg = tiny_cfg()
    estimate.trace_step(cfg, build_workload(cfg), ac_mode="none", micro_batch_size=2)
    assert calls == [0]


def test_health_observes_and_never_steps_the_optimizer():
    model = nn.Linear(4, 4)
    before = model.weight.detach().clone()
    model(torch.ones(2, 4)).sum().backward()
    mon = HealthMonitor(precision.POLICIES["fp32"], PrecisionConfig(), "skip", model)
    verdict = mon.check(0, torch.tensor(1.0), torch.tensor(1.0), None)
    assert verdict.finite and verdict.stop_reason is None
    assert mon.after_update(0, verdict, None) is True
    assert torch.equal(model.weight, before)  # only the loop's optimizer.step() changes weights
    stop = HealthMonitor(precision.POLICIES["fp32"], PrecisionConfig(), "stop", model)
    verdict = stop.check(4, torch.tensor(float("nan")), torch.tensor(1.0), None)
    assert not verdict.finite and "step 5" in verdict.stop_reason
    assert torch.equal(model.weight, before)


def test_config_choices_are_the_registries_names():
    assert config.PRECISION_POLICIES == list(precision.POLICIES)
    assert config.AC_MODES == [*ac.AC_COST_ORDER, "auto"]
    assert "fp8_auto" in {f.name for f in dataclasses.fields(Prepared)}


def test_run_status_rules():
    assert [s.value for s in RunStatus if s.succeeded] == ["completed", "early_stopped", "halted"]
    assert [s.value for s in RunStatus if s.finished] == ["completed", "early_stopped"]
    assert RunStatus.of("oom") is None and RunStatus.of("halted") is RunStatus.HALTED
