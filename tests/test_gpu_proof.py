"""benchmarks/gpu_proof.sh (issue 17): its plan is valid, and its CPU dry run runs end to end on
what the GPU image has, so the script cannot rot while no GPU is lent."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.device_image import ROOT, device_image_env
from trainwise.bench.runner import plan

SCRIPT = ROOT / "benchmarks" / "gpu_proof.sh"
GRID = {
    (p, ac, c)
    for p in ("fp32", "bf16-mixed", "fp8-tensorwise", "fp8-rowwise")
    for ac in ("none", "selective")
    for c in (False, True)
}


def load_summary_module():
    spec = importlib.util.spec_from_file_location("gpu_proof_summary", ROOT / "benchmarks" / "gpu_proof_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_commands() -> dict[str, list[str]]:
    out = subprocess.run(
        ["bash", str(SCRIPT), "--print-plan"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return {line.split("\t")[0]: line.rstrip("\t").split("\t")[1:] for line in out.splitlines() if line.strip()}


def test_the_stages_cover_the_grid_once_and_every_variant_is_a_valid_config():
    seen = []
    for stage, argv in stage_commands().items():
        assert argv[:3] == ["trainwise", "bench", "configs/lm-small.toml"]
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        variants = [argv[i + 1] for i, a in enumerate(argv) if a == "--variant"]
        assert "train.device=cuda" in sets and "bench.baseline=false" in sets
        _, vs = plan(ROOT / "configs" / "lm-small.toml", [], variants, sets)  # validates every variant's whole config
        control = [v for v in vs if v.is_control]
        assert len(control) == 1 and control[0].label == "fp32 control", stage  # one folder: the control trains once
        seen += [
            (v.cfg.precision.policy, v.cfg.memory.ac, v.cfg.train.compile)
            for v in vs
            if not v.is_control and v.kind == "trainwise"
        ]
    seen.append(("fp32", "none", False))  # the control
    assert sorted(seen) == sorted(GRID)  # all 16, none twice
    assert list(stage_commands()) == ["A", "B", "C", "D", "E"]


def test_paired_speedup_is_the_slow_over_the_fast_per_round():
    summary = load_summary_module()
    rounds = {"slow": [[10.0, 10.0], [12.0, 12.0]] * 3, "fast": [[5.0, 5.0], [4.0, 4.0]] * 3}
    stage = {
        "stage": "A",
        "timing": {"unreliable_reason": None, "variants": {h: {"step_ms": r} for h, r in rounds.items()}},
    }
    got = summary.paired_speedup(stage, "slow", "fast", "fast over slow")
    assert got["paired"] and got["n_rounds"] == 6
    assert got["median"] == pytest.approx((2.0 + 3.0) / 2)  # per-round ratios 2, 3, 2, 3, 2, 3
    assert summary._side_of_one(got) is True
    assert summary._side_of_one({**got, "ci95": [0.8, 1.2]}) is None
    assert summary._side_of_one({**got, "ci95": [0.5, 0.9]}) is False


def test_cpu_figures_never_carry_a_gpu_name():
    summary = load_summary_module()
    assert summary.hardware_name({"device": "cuda", "gpu_name": "NVIDIA H200"}, dry_run=False) == "h200"
    assert summary.hardware_name({"device": "cuda", "gpu_name": "NVIDIA H200"}, dry_run=True) == "cpu-dryrun"
    assert summary.hardware_name({"device": "cpu"}, dry_run=False) == "cpu"


@pytest.mark.slow
def test_dry_run_end_to_end_on_the_device_image(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**device_image_env(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--stages", "A", "--budget-s", "900", "--work", str(work), str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    (md,) = [f for f in files if f.endswith(".md")]
    assert md.startswith("lm-small_cpu-dryrun_") and "h200" not in " ".join(files)
    assert set(files) == {
        "gpu_proof.log",
        "info.json",
        "gpu_proof_work.tar.gz",
        md,
        md[:-3] + ".json",
    }  # <= 8 files come back

    info = json.loads((out / "info.json").read_text())
    assert info["device"] == "cpu" and info["matmul_gflops"]["fp8"] > 0 and "tf32" not in info["matmul_gflops"]
    assert info["model_gemm"]["gflops"]["fp32"] > 0 and info["model_gemm"]["gflops"]["tf32"] is None

    res = json.loads((out / (md[:-3] + ".json")).read_text())
    assert res["dry_run"] and "DRY RUN" in (out / md).read_text()
    assert [(s["stage"], s["status"]) for s in res["stages"]] == [("A", "done")] + [(s, "not selected") for s in "BCDE"]
    rows = {r["precision"]: r for r in res["variants"]}
    assert set(rows) == {"fp32", "bf16-mixed", "fp8-tensorwise", "fp8-rowwise"}
    assert all(
        r["status"] == "completed" and r["median_step_ms"] > 0 and r["final_val_loss"] > 0 for r in rows.values()
    )
    assert rows["fp32"]["quality_verdict"] == "control" and rows["bf16-mixed"]["quality_verdict"] in (
        "pass",
        "fail",
        "inconclusive",
    )
    assert rows["fp8-tensorwise"]["fp8_layers"] > 0 and rows["bf16-mixed"]["mfu"] is not None
    assert "timing phase" in rows["bf16-mixed"]["timing_source"]  # speeds from the interleaved rounds, paired
    figures = res["figures"]
    assert (
        figures["bf16_vs_fp32_speedup"]["paired"] and not figures["bf16_vs_fp32_speedup"]["reliable"]
    )  # 2 rounds: never quoted as reliable
    assert {(f["recipe"], f["compile"]) for f in figures["fp8_vs_bf16"]} == {
        ("fp8-tensorwise", False),
        ("fp8-rowwise", False),
    }
    assert len(figures["estimate_vs_measured"]) == 4 and all(
        e["measured_bytes"] > 0 for e in figures["estimate_vs_measured"]
    )
    assert sorted(p.name for p in (work / "estimate").glob("*.json")) == sorted(
        f"{p}-{ac}.json" for p in rows for ac in ("none", "selective")
    )
    assert (
        figures["preflight"]["verdict"] and figures["preflight"]["matched"] is None
    )  # fp8 is emulated on a CPU: not judged
