"""Variants, bad input (each one clear error, nothing run, nothing lost), recommendation rules."""

from __future__ import annotations

import json

import pytest

from trainwise.bench.grid import expand
from trainwise.bench.recommend import recommend
from trainwise.bench.report import pareto_front
from trainwise.bench.results import mfu, time_to_target
from trainwise.cli import main

TINY = ["--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "train.steps=8", "--set", "model.context=32"]


def test_grid_is_the_cartesian_product_with_the_control_marked():
    vs = expand(["precision.policy=fp32,bf16-mixed", "memory.ac=none,full,selective"], [])
    assert len(vs) == 6
    assert [v.is_control for v in vs].count(True) == 1
    assert vs[0].overrides == {"precision.policy": "fp32", "memory.ac": "none"} and vs[0].is_control
    assert len({v.hash for v in vs}) == 6


def test_control_is_added_when_no_variant_is_fp32():
    vs = expand(["precision.policy=bf16-mixed"], ["precision.policy=fp16-mixed;memory.ac=full"])
    assert vs[0].label == "fp32 control" and vs[0].is_control
    assert [v.label for v in vs[1:]] == ["bf16-mixed", "fp16-mixed, ac=full"]


def _run(capsys, *argv):
    code = main(["bench", "configs/lm-tiny.toml", *argv])
    return code, capsys.readouterr().err


def test_unknown_grid_key_names_the_closest(capsys, tmp_path):
    code, err = _run(capsys, "--grid", "precision.polcy=fp32,bf16-mixed", "--out", str(tmp_path / "o"))
    assert code == 2 and "unknown field 'polcy'" in err and "did you mean policy" in err and "--grid" in err
    assert not (tmp_path / "o").exists()


def test_empty_grid(capsys, tmp_path):
    code, err = _run(capsys, "--out", str(tmp_path / "o"))
    assert code == 2 and "empty grid" in err
    code, err = _run(capsys, "--grid", "precision.policy=", "--out", str(tmp_path / "o"))
    assert code == 2 and "no values" in err


def test_value_the_field_does_not_accept(capsys, tmp_path):
    code, err = _run(capsys, "--grid", "precision.policy=fp32,bf17-mixed", "--out", str(tmp_path / "o"))
    assert code == 2 and "bf17-mixed" in err and "expected one of" in err and "did you mean 'bf16-mixed'" in err
    code, err = _run(capsys, "--grid", "train.steps=10,-3", "--out", str(tmp_path / "o"))
    assert code == 2 and "train.steps = -3: must be >= 1" in err
    assert not (tmp_path / "o").exists()


def test_out_dir_of_another_bench_is_refused_and_kept(capsys, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    marker = {"base_config_hash": "0123456789abcdef", "workload": "lm", "variants": []}
    (out / "bench.json").write_text(json.dumps(marker))
    (out / "results.json").write_text("[1]")
    code, err = _run(capsys, "--grid", "precision.policy=fp32", *TINY, "--out", str(out))
    assert code == 2 and "holds the results of another bench" in err
    assert json.loads((out / "bench.json").read_text()) == marker and (out / "results.json").read_text() == "[1]"
    other = tmp_path / "p"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, err = _run(capsys, "--grid", "precision.policy=fp32", "--out", str(other))
    assert code == 2 and "not a bench folder" in err and (other / "notes.txt").read_text() == "mine"


def _row(label, tps, verdict="pass", control=False, status="completed", mem=100, rise=0.0, alarms=()):
    return {
        "label": label,
        "variant": {"x": label},
        "config_hash": label,
        "kind": "trainwise",
        "is_control": control,
        "status": status,
        "reason": "boom" if status != "completed" else None,
        "tokens_per_s": tps,
        "median_step_ms": 1000 / tps if tps else None,
        "peak_memory_bytes": mem,
        "peak_activation_bytes": mem / 2,
        "final_val_loss": 2.0 * (1 + rise),
        "val_loss_rise": rise,
        "quality_verdict": "control" if control else verdict,
        "health_issues": list(alarms),
        "quality_detail": f"validation loss {rise:+.1%} vs the control",
        "step_ms_samples": [1000 / tps] * 20 if tps else [],
    }


def test_recommendation_takes_the_fastest_that_passes_and_says_why_not_the_others():
    rows = [
        _row("fp32", 100, control=True),
        _row("bf16", 300, mem=60),
        _row("fp8", 400, verdict="fail", rise=0.06),
        _row("fp16", 20),
        _row("crash", None, status="crashed"),
        _row("big", 350, mem=2**31),
        _row("alarm", 500, alarms=["loss-scale collapse: the fp16 loss scale fell to 0.5"]),
    ]
    rec = recommend(rows, budget_gib=1.0, tolerance=0.02, device="cpu")
    assert rec["label"] == "bf16"
    assert rec["speedup_vs_fp32"] == pytest.approx(3.0)
    assert rec["memory_saving_vs_fp32"] == pytest.approx(0.4)
    reasons = {r["label"]: r["reason"] for r in rec["rejected"]}
    assert "quality fail: validation loss +6.0% vs the control" in reasons["fp8"]
    assert "5.0x slower than fp32 on this cpu" in reasons["fp16"]
    assert "over bench.memory_budget_gib" in reasons["big"]
    assert "numerics: loss-scale collapse" in reasons["alarm"] and "crashed: boom" in reasons["crash"]
    assert {r["label"] for r in rec["rejected"] if r["faster_than_recommended"]} == {"fp8", "big", "alarm"}


def test_no_recommendation_without_a_control():
    rec = recommend([_row("fp32", None, control=True, status="crashed"), _row("bf16", 300)], 0.0, 0.02, "cpu")
    assert rec["variant"] is None and "control did not finish" in rec["reason"]


def test_health_issues_judge_the_end_of_the_run():
    from trainwise.bench.results import health_issues

    early = {
        "alarms": ["skipped steps: 1 of 10 steps (10%) were skipped"],
        "skipped_steps": 1,
        "steps": 30,
        "skipped_share": 1 / 30,
    }
    assert health_issues(early, 0.05) == []
    bad = {
        "alarms": ["loss-scale collapse: the fp16 loss scale fell to 0.5"],
        "skipped_steps": 9,
        "steps": 30,
        "skipped_share": 0.3,
    }
    issues = health_issues(bad, 0.05)
    assert len(issues) == 2 and issues[0].startswith("loss-scale collapse") and "9 of 30 steps (30%)" in issues[1]


def test_pareto_front():
    # (memory, speed): (1, 1) and (2, 3) and (4, 5) are on the front; (3, 2) is dominated by (2, 3)
    assert pareto_front([(2, 3), (1, 1), (3, 2), (4, 5)]) == [1, 0, 3]


def test_time_to_target_and_mfu():
    assert time_to_target([[10, 3.0], [20, 2.5], [30, 2.0]], 2.6, 100.0) == (20, 2.0)
    assert time_to_target([[10, 3.0]], 2.6, 100.0) == (None, None)
    value, label = mfu(1e9, 100.0, "fp8-tensorwise", {"matmul_gflops": {"bf16": 20.0}})
    assert value == pytest.approx(0.5) and "bf16-equivalent" in label


def test_control_seeds_are_added_once_and_tagged_in_order():
    from trainwise.bench.grid import control_seeds, seed_hashes

    vs = expand(["precision.policy=fp32,bf16-mixed"], [])
    new = control_seeds(vs, 3)
    assert [v.label for v in new] == ["fp32 control (seed 1)", "fp32 control (seed 2)"] and all(
        v.kind == "control-seed" for v in new
    )
    assert seed_hashes(vs + new) == [vs[0].hash, new[0].hash, new[1].hash]
    # a seed some variant already trains is not trained twice: that variant serves as the seed
    vs = expand(["precision.policy=fp32,bf16-mixed"], ["train.seed=1"])
    assert control_seeds(vs, 2) == [] and seed_hashes(vs) == [vs[0].hash, vs[2].hash] and vs[2].kind == "trainwise"
