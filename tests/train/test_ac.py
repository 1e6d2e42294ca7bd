"""Activation checkpointing: every mode computes exactly what no AC computes; bad input is named."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.train.memory_fixtures import Plain, lm_batch, tiny_gpt
from trainwise.errors import ConfigError
from trainwise.train.ac import CheckpointedBlock, apply_ac, find_blocks
from trainwise.train.precision import autocast_context, get_policy
from trainwise.train.setup import prepare
from trainwise.workloads.lm import Block

CPU = torch.device("cpu")


def loss_and_grads(model, policy_name="fp32"):
    policy = get_policy(policy_name, CPU)
    x, y = lm_batch()
    with autocast_context(policy, CPU):
        logits = model(x)
    loss = nn.functional.cross_entropy(logits.reshape(-1, 256).float(), y.reshape(-1))
    loss.backward()
    return logits.detach().float(), {n.replace(".block.", "."): p.grad.float() for n, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["full", "every-n", "selective"])
def test_ac_outputs_and_gradients_equal_no_ac_fp32(mode):
    ref = tiny_gpt()
    model = apply_ac(copy.deepcopy(ref), mode, every=2, block_classes=(Block,))
    wrapped = [m for m in model.modules() if isinstance(m, CheckpointedBlock)]
    assert len(wrapped) == (2 if mode == "every-n" else 3)  # 3 blocks; every-n with n=2 wraps blocks 0 and 2
    out_ref, g_ref = loss_and_grads(ref)
    out, g = loss_and_grads(model)
    torch.testing.assert_close(out, out_ref)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], msg=name)


@pytest.mark.parametrize("policy_name", ["bf16-true", "bf16-mixed", "fp8-tensorwise"])
@pytest.mark.parametrize("mode", ["full", "selective"])
def test_ac_matches_no_ac_under_every_precision(policy_name, mode):
    # fp8: torchao Float8Linear (emulated on CPU) inside checkpointed blocks; the recomputation
    # repeats the same casts and scales, so gradients are those of the fp8 model without AC
    policy = get_policy(policy_name, CPU)
    ref = prepare(tiny_gpt(), policy=policy, device=CPU, ac_mode="none", block_classes=(Block,)).model
    model = prepare(tiny_gpt(), policy=policy, device=CPU, ac_mode=mode, block_classes=(Block,)).model
    if policy_name.startswith("fp8"):
        assert any(type(m).__name__ == "Float8Linear" for m in model.modules())
    out_ref, g_ref = loss_and_grads(ref, policy_name)
    out, g = loss_and_grads(model, policy_name)
    torch.testing.assert_close(out, out_ref)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], msg=name)


def test_blocks_found_by_user_named_class():
    model = nn.Sequential(Plain(), Plain())
    assert find_blocks(model, (), ["Plain"]) == [("0", model[0]), ("1", model[1])]
    apply_ac(model, "full", block_class_names=["Plain"])
    assert all(isinstance(m, CheckpointedBlock) and isinstance(m.block, Plain) for m in model)


def test_no_recognisable_blocks_names_the_classes_and_the_config_field():
    with pytest.raises(ConfigError) as e:
        apply_ac(Plain(), "selective", block_classes=(Block,), block_class_names=["MyBlock"])
    msg = str(e.value)
    assert "Block" in msg and "MyBlock" in msg and "memory.block_classes" in msg


def test_auto_must_be_resolved_before_apply_ac():
    with pytest.raises(ConfigError, match="auto"):
        apply_ac(tiny_gpt(), "auto", block_classes=(Block,))


def test_no_blocks_error_through_the_cli(tmp_path, monkeypatch, capsys):
    # a user workload whose model has no block classes, trained with AC on
    (tmp_path / "noblocks_wl.py").write_text(
        "import torch\n"
        "from tests.train.memory_fixtures import Plain\n"
        "from trainwise.workloads.base import Split, Workload\n"
        "def make(cfg):\n"
        "    s = Split(torch.randn(32, 8), torch.randint(0, 8, (32,)))\n"
        "    return Workload('noblocks', 'classification', Plain(), s, s, s, spec={})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from trainwise.cli import main

    code = main(
        [
            "estimate",
            "configs/lm-tiny.toml",
            "--set",
            "workload.name=entry",
            "--set",
            "workload.entry=noblocks_wl:make",
            "--set",
            "memory.ac=full",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "no recognisable blocks" in err and "memory.block_classes" in err and len(err.strip().splitlines()) == 1


class _CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _backward_op_counts(model):
    x, _ = lm_batch()
    loss = model(x).float().sum()
    counter = _CountOps()
    with counter:
        loss.backward()
    return counter.counts


def test_selective_recomputes_no_matmul_but_full_does():
    # selective: the LayerNorms and GELUs rerun in backward, no forward matmul (addmm) does, not
    # even the trailing projection whose cached output is dropped; full reruns the matmuls
    sel = _backward_op_counts(apply_ac(tiny_gpt(), "selective", block_classes=(Block,)))
    full = _backward_op_counts(apply_ac(tiny_gpt(), "full", block_classes=(Block,)))
    assert sel.get("addmm", 0) == 0 and sel.get("gelu", 0) == 3 and sel.get("native_layer_norm", 0) == 6
    assert full.get("addmm", 0) > 0


def test_trailing_matmul_output_is_dropped_only_when_backward_does_not_need_it():
    from trainwise.train import ac

    def cached_after_forward(block, x):
        pruner = ac._TrailingMatmulPruner()
        torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False, context_fn=pruner.contexts)
        return pruner.prune()

    x = torch.randn(4, 8, 32, requires_grad=True)
    assert cached_after_forward(tiny_gpt().blocks[0], x)  # pre-norm block: x + mlp.proj(h) ends it
    post_norm = nn.Sequential(nn.Linear(32, 32), nn.LayerNorm(32))  # LayerNorm's backward reads the matmul output
    assert not cached_after_forward(post_norm, x)
