"""prepare(): the techniques are applied in torchtitan's order, and each is a no-op when disabled."""

from __future__ import annotations

import torch

from trainwise.train.ac import CheckpointedBlock
from trainwise.train.precision import POLICIES
from trainwise.train.setup import prepare
from trainwise.workloads.lm import GPT, Block


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(n_layers=2, n_heads=2, d_model=32, context=16)


def test_disabled_techniques_leave_the_model_alone():
    model = tiny_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare(model, policy=POLICIES["fp32"], device=torch.device("cpu"), block_classes=(Block,))
    assert prepared.model is model and prepared.fp8_layers == [] and prepared.compiled_blocks == 0
    assert all(isinstance(b, Block) for b in model.blocks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_order_fp8_then_ac_then_compile():
    from torchao.float8.float8_linear import Float8Linear

    model = tiny_gpt()
    prepared = prepare(
        model,
        policy=POLICIES["fp8-tensorwise"],
        device=torch.device("cpu"),
        ac_mode="full",
        compile=True,
        block_classes=(Block,),
    )
    assert "head" not in prepared.fp8_layers and "blocks.0.attn.qkv" in prepared.fp8_layers
    assert not isinstance(model.head, Float8Linear)
    for wrapper in model.blocks:
        # AC wraps the FP8-converted block; compile is applied to the block inside the wrapper
        assert isinstance(wrapper, CheckpointedBlock)
        assert isinstance(wrapper.block.attn.qkv, Float8Linear)
        assert wrapper.block._compiled_call_impl is not None
        assert wrapper._compiled_call_impl is None
    assert prepared.compiled_blocks == 2


def test_bf16_true_casts_master_weights():
    model = tiny_gpt()
    prepare(model, policy=POLICIES["bf16-true"], device=torch.device("cpu"), block_classes=(Block,))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
