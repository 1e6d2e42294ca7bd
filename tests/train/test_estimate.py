"""The estimator, `auto` AC, fit-batch, and their bad input."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.memory_fixtures import TINY, tiny_cfg
from trainwise.cli import main
from trainwise.rundir import clean_state_dict
from trainwise.train.ac import CheckpointedBlock
from trainwise.train.autoac import confirm_ac_mode, resolve_ac_mode
from trainwise.train.estimate import GIB, estimate_memory, trace_step
from trainwise.workloads.build import build_workload

SETS = [a for item in TINY for a in ("--set", item)]


@pytest.fixture(scope="module")
def workload():
    return build_workload(tiny_cfg())


@pytest.fixture(scope="module")
def peaks(workload):
    """Estimated peak per AC mode for the tiny config (shared: each trace takes a second)."""
    return {
        m: estimate_memory(tiny_cfg(), workload, ac_mode=m)["peak_memory_bytes"] for m in ("none", "selective", "full")
    }


def test_estimate_matches_a_measured_real_step(workload):
    cfg = tiny_cfg("precision.policy=bf16-mixed")
    est = estimate_memory(cfg, workload, ac_mode="selective")
    real = trace_step(cfg, workload, ac_mode="selective", micro_batch_size=8, fake=False)
    assert abs(est["peak_memory_bytes"] / real["peak_memory_bytes"] - 1) <= 0.15
    assert est["peak_activation_bytes"] > 0


def test_estimate_follows_micro_batch_precision_and_sharding(workload):
    small = estimate_memory(tiny_cfg(), workload, micro_batch_size=4)
    big = estimate_memory(tiny_cfg(), workload, micro_batch_size=16)
    assert big["peak_activation_bytes"] > 2 * small["peak_activation_bytes"]
    half = estimate_memory(tiny_cfg("precision.policy=bf16-true"), workload, micro_batch_size=4)
    assert half["memory_breakdown"]["parameters"] * 2 == small["memory_breakdown"]["parameters"]
    sharded = estimate_memory(tiny_cfg("parallel.strategy=fsdp2"), workload, micro_batch_size=4, world_size=4)
    assert sharded["parameter_state_bytes"] <= small["parameter_state_bytes"] / 4 + 64
    assert sharded["inputs"]["fsdp_shard_factor"] == 4 and small["inputs"]["sequence_length"] == 16


def test_auto_picks_none_when_ample_and_a_cheaper_mode_when_tight(workload, peaks):
    assert peaks["none"] > peaks["selective"] > peaks["full"]
    ample = tiny_cfg("memory.ac=auto", f"memory.budget_gib={2 * peaks['none'] / GIB}")
    assert resolve_ac_mode(ample, workload)[0] == "none"
    tight = tiny_cfg("memory.ac=auto", f"memory.budget_gib={(peaks['selective'] + peaks['full']) / 2 / GIB}")
    mode, note = resolve_ac_mode(tight, workload)
    assert mode in ("every-n", "full") and "none" in note  # says which modes it estimated over budget


def test_auto_confirms_or_chooses_the_next_mode_by_the_measured_peak():
    cfg = tiny_cfg("memory.ac=auto", "memory.budget_gib=0.001")
    mode, note, switched = confirm_ac_mode("selective", 2 * GIB, cfg)
    assert (mode, switched) == ("every-n", True) and "fell back" in note and "2.0000 GiB" in note
    assert confirm_ac_mode("every-n", 1000, cfg)[:3:2] == ("every-n", False)
    assert confirm_ac_mode("full", 2 * GIB, cfg)[:3:2] == ("full", False)  # nothing cheaper left: kept, said
    mode, note, switched = confirm_ac_mode("none", None, cfg, "storage tracking does not see inside compiled blocks")
    assert (mode, switched) == ("none", False) and "not confirmed" in note and "compiled blocks" in note


def force_auto_to_choose_none(monkeypatch):
    """The estimator's choice replaced by 'none', so that a tiny budget makes the trainer's
    measurement fall back at every measured step: none -> selective -> every-n -> full."""
    import trainwise.train.run as run

    monkeypatch.setattr(run, "resolve_ac_mode", lambda cfg, workload, world_size=1: ("none", "forced by the test"))


def logged_losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fallback_rebuilds_the_model_and_training_goes_on_as_if_never_switched(tmp_path, monkeypatch):
    """The model is prepared again with each next mode and the weights and AdamW's moments are
    carried over: the losses equal those of a run that never switched (AC only recomputes)."""
    from trainwise.train.loop import train

    common = ("train.steps=6", "train.log_every=1", "train.eval_every=0", "train.eval_batches=1")
    plain = train(tiny_cfg(*common), tmp_path / "plain")
    force_auto_to_choose_none(monkeypatch)
    fell = train(tiny_cfg(*common, "memory.ac=auto", "memory.budget_gib=0.0001"), tmp_path / "auto")
    s = fell.summary
    assert (s["ac"], s["status"]) == ("full", "completed"), s["ac_note"]
    assert s["ac_note"].count("fell back") == 3 and "even with 'full'" in s["ac_note"]
    assert sum(isinstance(m, CheckpointedBlock) for m in fell.model.modules()) == 3  # every block, fully
    assert fell.workload.model is fell.model  # the rebuilt model is the run's model
    torch.testing.assert_close(logged_losses(tmp_path / "auto"), logged_losses(tmp_path / "plain"), rtol=1e-6, atol=0)
    torch.testing.assert_close(clean_state_dict(fell.model), clean_state_dict(plain.model), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_auto_with_compile_says_its_choice_was_not_measured(tmp_path):
    """MemTracker cannot see inside compiled blocks (no CUDA counters on CPU): the summary says the
    estimate stood unconfirmed, not 'confirmed' by a peak of 0."""
    from trainwise.train.loop import train

    extra = ("train.compile=true", "train.steps=3", "train.eval_every=0", "train.eval_batches=1")
    s = train(tiny_cfg("memory.ac=auto", "memory.budget_gib=1", *extra), tmp_path / "run").summary
    assert s["ac"] == "none" and "not confirmed by a measurement" in s["ac_note"], s["ac_note"]
    assert "confirmed: measured" not in s["ac_note"] and "compiled blocks" in s["ac_note"]


@pytest.mark.slow
def test_train_with_auto_records_the_choice(tmp_path, peaks):
    from trainwise.train.loop import train

    cfg = tiny_cfg(
        "memory.ac=auto",
        f"memory.budget_gib={(peaks['selective'] + peaks['full']) / 2 / GIB}",
        "train.steps=3",
        "train.eval_every=0",
        "train.eval_batches=1",
    )
    s = train(cfg, tmp_path / "run").summary
    assert s["ac_requested"] == "auto" and s["ac"] in ("every-n", "full") and "confirmed" in s["ac_note"]
    assert s["peak_memory_bytes"] <= cfg.memory.budget_gib * GIB


def test_estimate_cli_json(capsys):
    assert main(["estimate", "configs/lm-tiny.toml", *SETS, "--set", "memory.ac=full", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inputs"]["ac"] == "full" and out["peak_memory_bytes"] == sum(out["memory_breakdown"].values())


@pytest.mark.slow
def test_fit_batch_finds_a_fitting_micro_batch(capsys, peaks):
    budget = 2 * peaks["none"] / GIB  # twice what micro-batch 8 needs without AC
    code = main(
        [
            "fit-batch",
            "configs/lm-tiny.toml",
            *SETS,
            "--set",
            "train.global_batch_size=64",
            "--budget-gib",
            f"{budget}",
            "--json",
        ]
    )
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["micro_batch_size"] > 8
    assert res["measured_peak_bytes"] <= budget * GIB and res["estimated_peak_bytes"] <= budget * GIB
    assert 64 % res["micro_batch_size"] == 0  # usable: divides the global batch
    fitted = {m: v["micro_batch_size"] for m, v in res["per_mode"].items()}
    assert fitted["none"] <= fitted.get("full", 64)  # full AC never fits less than none


def test_budget_below_parameter_needs_states_the_minimum(capsys):
    code = main(["fit-batch", "configs/lm-tiny.toml", *SETS, "--budget-gib", "0.00001"])
    err = capsys.readouterr().err
    assert code == 2 and "minimum reachable budget is" in err and "parameters" in err
    assert len(err.strip().splitlines()) == 1


def test_auto_without_budget_is_an_error(capsys):
    code = main(["estimate", "configs/lm-tiny.toml", *SETS, "--set", "memory.ac=auto"])
    assert code == 2 and "memory.budget_gib" in capsys.readouterr().err
