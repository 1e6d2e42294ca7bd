"""Memory measurement: storages held for backward, right under every AC mode, in the run files."""

from __future__ import annotations

import copy
import json

import torch
from torch import nn

from tests.train.memory_fixtures import lm_batch, tiny_cfg, tiny_gpt
from trainwise.train.ac import apply_ac
from trainwise.train.memory import measure_step_memory
from trainwise.workloads.lm import Block

CPU = torch.device("cpu")


def measured_step(model, n_micro: int = 1) -> dict:
    opt = torch.optim.AdamW(model.parameters(), foreach=True)

    def step():
        for i in range(n_micro):
            x, y = lm_batch(batch=8, context=model.context, seed=i)
            nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # creates the optimizer state, as in the trainer
    with measure_step_memory(model, opt, CPU) as mem:
        step()
    return mem.result()


def test_activation_bytes_strictly_decrease_none_selective_full():
    base = tiny_gpt(n_layers=4, d_model=64, context=32)
    act = {
        mode: measured_step(apply_ac(copy.deepcopy(base), mode, block_classes=(Block,)))["peak_activation_bytes"]
        for mode in ("none", "selective", "full")
    }
    assert act["none"] > act["selective"] > act["full"] > 0, act


def test_activation_bytes_agree_with_the_tensors_autograd_saves():
    # Independent count without AC: the distinct storages autograd saves for backward (saved-tensor
    # hooks) must be what MemTracker calls activations, give or take the loss's own small tensors.
    model = tiny_gpt(n_layers=2, d_model=64, context=32)
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if not isinstance(t, nn.Parameter) and t.device.type == "cpu":
            saved[s.data_ptr()] = s.nbytes()
        return t

    x, y = lm_batch(batch=8, context=32)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    independent = sum(v for k, v in saved.items() if k not in param_ptrs)
    loss.backward()
    measured = measured_step(model)["peak_activation_bytes"]
    assert abs(measured / independent - 1) < 0.10, (measured, independent)


def test_breakdown_adds_up_and_gradient_accumulation_is_measured():
    m1 = measured_step(tiny_gpt(), n_micro=1)
    m2 = measured_step(tiny_gpt(), n_micro=2)  # MemTracker alone refuses a second forward in one region
    for m in (m1, m2):
        assert sum(m["memory_breakdown"].values()) == m["peak_memory_bytes"]
    n_param_bytes = sum(p.numel() * 4 for p in tiny_gpt().parameters())
    assert m1["memory_breakdown"]["parameters"] == n_param_bytes
    assert (
        m2["peak_memory_bytes"] >= m1["peak_memory_bytes"]
    )  # accumulated gradients are live during the 2nd micro-batch


def test_trainer_writes_memory_to_summary_and_metrics(tmp_path):
    from trainwise.train.loop import train

    cfg = tiny_cfg(
        "train.steps=3", "train.eval_every=0", "train.eval_batches=1", "memory.ac=selective", "train.log_every=100"
    )
    summary = train(cfg, tmp_path / "run").summary
    assert summary["peak_activation_bytes"] > 0 and summary["peak_memory_bytes"] > summary["peak_activation_bytes"]
    assert set(summary["memory_breakdown"]) >= {
        "parameters",
        "gradients",
        "optimizer_state",
        "activations",
        "temporaries",
    }
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    measured = [r for r in rows if "peak_activation_bytes" in r]
    assert [r["step"] for r in measured] == [2]  # the second step is the measured one
    assert measured[0]["peak_activation_bytes"] == summary["peak_activation_bytes"]
    assert summary["ac"] == "selective" and summary["ac_requested"] == "selective"
