"""The trainer: resume equals an uninterrupted run, determinism, every precision policy, fp16 alarms."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import TINY_LM, tiny_lm_config
from trainwise.cli import main
from trainwise.config import load_config
from trainwise.errors import TrainwiseError
from trainwise.train.loop import train
from trainwise.train.step import lr_at


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_file(run_dir / "model" / "weights.safetensors")


def test_run_directory_contract(tmp_path):
    result = train(tiny_lm_config(), tmp_path / "run")
    run = result.run_dir
    for name in (
        "config.toml",
        "env.json",
        "metrics.jsonl",
        "summary.json",
        "model/weights.safetensors",
        "model/model.json",
    ):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "latest").is_file()
    summary = json.loads((run / "summary.json").read_text())
    for key in (
        "status",
        "steps",
        "final_train_loss",
        "final_val_loss",
        "median_step_ms",
        "tokens_per_s",
        "peak_activation_bytes",
        "peak_memory_bytes",
        "precision",
        "ac",
        "strategy",
        "world_size",
    ):
        assert key in summary, key
    assert summary["status"] == "completed" and summary["steps"] == 8
    assert summary["peak_activation_bytes"] > 0 and summary["peak_memory_bytes"] >= summary["peak_activation_bytes"]
    env = json.loads((run / "env.json").read_text())
    assert env["precision"]["name"] == "fp32" and len(env["data_fingerprints"]["train"]) == 64
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert {"loss", "lr", "step_ms", "tokens_per_s", "grad_norm"} <= set(rows[0])


def test_resume_equals_uninterrupted(tmp_path):
    full = train(tiny_lm_config(), tmp_path / "full")
    half = train(tiny_lm_config("train.halt_after_steps=4"), tmp_path / "half")
    assert half.summary["status"] == "halted" and half.summary["steps"] == 4
    resumed = train(
        load_config(tmp_path / "half" / "config.toml", ["train.halt_after_steps=0"]), tmp_path / "half", resume=True
    )
    assert resumed.summary["steps"] == 8
    assert [r["loss"] for r in read_metrics(full.run_dir)] == [r["loss"] for r in read_metrics(resumed.run_dir)]
    a, b = weights(full.run_dir), weights(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_rejects_trajectory_changes(tmp_path, capsys):
    train(tiny_lm_config("train.halt_after_steps=2"), tmp_path / "run")
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "train.lr=0.5"]) == 2
    assert "train.lr cannot change when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "no config.toml there" in capsys.readouterr().err


def test_same_seed_same_numbers(tmp_path):
    a = train(tiny_lm_config("train.steps=5"), tmp_path / "a")
    b = train(tiny_lm_config("train.steps=5"), tmp_path / "b")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("step_ms", "tokens_per_s")} for r in rows]  # noqa: E731
    assert strip(read_metrics(a.run_dir)) == strip(read_metrics(b.run_dir))
    c = train(tiny_lm_config("train.steps=5", "train.seed=1"), tmp_path / "c")
    assert read_metrics(c.run_dir)[0]["loss"] != read_metrics(a.run_dir)[0]["loss"]


@pytest.mark.parametrize("policy", ["fp32", "bf16-mixed", "fp16-mixed", "bf16-true", "fp8-tensorwise", "fp8-rowwise"])
def test_every_policy_trains(tmp_path, policy):
    # d_model 32 keeps every Linear dimension a multiple of 16, so FP8 converts the blocks
    result = train(tiny_lm_config(f"precision.policy={policy}", "train.steps=12", "train.lr=3e-3"), tmp_path / policy)
    losses = [r["loss"] for r in read_metrics(result.run_dir)]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert result.summary["skipped_steps"] == 0
    env = json.loads((result.run_dir / "env.json").read_text())
    assert env["precision"]["name"] == policy
    if policy.startswith("fp8"):
        assert env["fp8_layers"] and "head" not in env["fp8_layers"]


OVERFLOW = [
    "workload.name=entry",
    "workload.entry=tests.helpers:overflow_workload",
    "train.steps=20",
    "train.micro_batch_size=32",
    "train.global_batch_size=32",
    "train.warmup_steps=2",
    "log.progress=false",
    "log.mlflow=false",
    "train.threads=1",
]


def test_fp16_overflow_fires_the_alarm(tmp_path):
    result = train(
        load_config(None, OVERFLOW + ["precision.policy=fp16-mixed", "precision.loss_scale_floor=1"]), tmp_path / "fp16"
    )
    s = result.summary
    assert s["skipped_steps"] >= 10
    assert s["min_loss_scale"] < 1
    assert any("loss-scale collapse" in a for a in s["alarms"]) and any("skipped steps" in a for a in s["alarms"])
    assert s["first_nonfinite"]["step"] == 1
    # the same model in fp32 (and in bf16, which has fp32's range) skips nothing and raises no alarm
    for policy in ("fp32", "bf16-mixed"):
        control = train(load_config(None, OVERFLOW + [f"precision.policy={policy}"]), tmp_path / policy).summary
        assert control["skipped_steps"] == 0 and control["alarms"] == []


def test_nonfinite_stop_names_the_step(tmp_path):
    cfg = load_config(None, OVERFLOW + ["precision.policy=fp16-mixed", "train.on_nonfinite=stop"])
    with pytest.raises(TrainwiseError, match="non-finite loss or gradient at step 1"):
        train(cfg, tmp_path / "stop")
    assert json.loads((tmp_path / "stop" / "summary.json").read_text())["status"] == "failed"


def test_lr_schedule():
    assert lr_at(0, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_at(55, 1.0, 10, 100, 0.1) == pytest.approx(0.55)


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep")
    with pytest.raises(TrainwiseError, match="already exists and is not empty"):
        train(tiny_lm_config(), run)
    assert (run / "precious.txt").read_text() == "keep"


def test_cli_train_logs_to_mlflow_by_default(tmp_path, capsys):
    import mlflow

    recipe = tmp_path / "tiny.toml"
    recipe.write_text("[train]\nthreads = 1\n")
    argv = ["train", str(recipe)]
    for item in TINY_LM:
        if item != "log.mlflow=false":  # the default: log to MLflow
            argv += ["--set", item]
    assert main(argv + ["--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "mlflow: logged as run" in out
    run_id = out.split("mlflow: logged as run ")[1].split()[0]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.params["train.steps"] == "8" and "loss" in run.data.metrics


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    big = train(
        tiny_lm_config("train.steps=4", "train.micro_batch_size=8", "train.global_batch_size=8"), tmp_path / "big"
    )
    acc = train(
        tiny_lm_config("train.steps=4", "train.micro_batch_size=4", "train.global_batch_size=8"), tmp_path / "acc"
    )
    assert acc.summary["peak_activation_bytes"] > 0  # memory is measured on an accumulating step too
    assert acc.summary["peak_activation_bytes"] < big.summary["peak_activation_bytes"]  # half the micro-batch
    a, b = read_metrics(big.run_dir), read_metrics(acc.run_dir)
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)


def test_each_alarm_is_raised_once(tmp_path):
    s = train(
        load_config(None, OVERFLOW + ["precision.policy=fp16-mixed", "train.steps=30"]), tmp_path / "fp16"
    ).summary
    kinds = [a.split(":")[0] for a in s["alarms"]]
    assert len(kinds) == len(set(kinds)) and "skipped steps" in kinds


def test_init_from_starts_from_a_previous_runs_weights(tmp_path, capsys):
    from trainwise.workloads.build import build_workload

    first = train(tiny_lm_config(), tmp_path / "first").run_dir
    cfg = tiny_lm_config(f"model.init_from={first}", "train.seed=7")  # another seed would give other fresh weights
    model = build_workload(cfg).model
    for name, tensor in weights(first).items():
        assert torch.equal(model.state_dict()[name], tensor), name
    fine_tuned = train(cfg, tmp_path / "second")
    assert (
        fine_tuned.summary["final_val_loss"]
        < train(tiny_lm_config("train.seed=7"), tmp_path / "fresh").summary["final_val_loss"]
    )

    # another architecture: one clear error naming the field, the path and the mismatch
    args = [a for s in TINY_LM for a in ("--set", s)]
    code = main(
        [
            "train",
            "configs/lm-tiny.toml",
            *args,
            "--set",
            "model.d_model=48",
            "--set",
            f"model.init_from={first}",
            "--run-dir",
            str(tmp_path / "bad"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model.init_from" in err and str(first) in err and "(48,)" in err
    code = main(
        [
            "train",
            "configs/lm-tiny.toml",
            *args,
            "--set",
            f"model.init_from={tmp_path / 'nowhere'}",
            "--run-dir",
            str(tmp_path / "bad2"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "model.init_from" in err and "holds no model" in err
