"""What the timing phase times: the timing worker's step is the trainer's own step (the same loss,
bit for bit, as the uninterrupted run's next step), and the plain-PyTorch baseline trains on the
variants' device with none of trainwise's code."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_lm_config
from trainwise.bench import baseline
from trainwise.bench.baseline import PlainBatches, plain_optimizer, plain_step, plain_train
from trainwise.bench.timing_worker import build_baseline_step, build_trainwise_step
from trainwise.train.loop import train
from trainwise.workloads.build import build_workload
from trainwise.workloads.lm import build_gpt


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.parametrize("extra", [[], ["precision.policy=fp16-mixed", "memory.ac=full"]])
def test_the_timed_step_is_the_trainers_step(tmp_path, extra):
    full = train(tiny_lm_config(*extra), tmp_path / "full")
    train(tiny_lm_config(*extra, "train.halt_after_steps=5"), tmp_path / "half")
    timed = build_trainwise_step(tiny_lm_config(*extra), tmp_path / "half")  # restored from the step-5 checkpoint
    expected = losses(full.run_dir)
    for step in (6, 7):
        ms, loss = timed.step()
        assert ms > 0 and loss.item() == expected[step]
    gflops, n_gemms = timed.gemm_peak("bf16")  # MFU's fallback peak: this model's own matmul shapes, in bf16
    assert gflops > 0 and n_gemms == 3 * 9  # 2 blocks x 4 Linear + the head, forward and two backward GEMMs each


def test_the_timed_baseline_step_is_the_plain_loops_step():
    cfg = tiny_lm_config("train.steps=1")
    torch.manual_seed(cfg.train.seed)
    wl = build_workload(cfg)
    first = plain_train(wl.model, wl.train.inputs, wl.train.targets, [wl.val.batch(torch.arange(4))], cfg.train, "cpu")
    ms, loss = build_baseline_step(cfg).step()  # the same seed: the same initial weights and first batch
    assert loss.item() == first["final_train_loss"] and first["device"] == "cpu"


def test_the_baseline_moves_model_and_batches_to_its_device():
    # the meta device computes shapes only: whatever ran on it was really moved there
    cfg = tiny_lm_config()
    model = build_gpt(1, 2, 16, 8)
    meta = torch.device("meta")
    opt = plain_optimizer(model, cfg.train, meta)
    assert {p.device for p in model.parameters()} == {meta}
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].device))
    batches = PlainBatches(torch.randint(0, 256, (10, 8)), torch.randint(0, 256, (10, 8)), micro=2, accum=2, seed=0)
    loss = plain_step(model, opt, batches.next_step(), 1.0, meta)
    assert seen == [meta, meta] and loss.device == meta
    assert all(p.grad is None for p in model.parameters())  # zero_grad ran: the step finished


def test_the_baseline_shares_no_trainwise_code():
    tree = ast.parse(Path(baseline.__file__).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    ]
    assert not [m for m in imported if m and m.startswith("trainwise")], imported
