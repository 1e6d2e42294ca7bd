"""model/: weights named as the plain model whatever wrapped it, refused when the spec cannot load them."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as tdist
from safetensors.torch import load_file, save_file
from torch import nn

from trainwise.errors import DataError, TrainwiseError
from trainwise.rundir import MODEL_JSON, MODEL_WEIGHTS, clean_state_dict, load_model, save_model
from trainwise.train.ac import apply_ac
from trainwise.train.precision import apply_fp8
from trainwise.workloads.tabular import MLPBlock, build_tabular_mlp

KWARGS = {"n_features": 20, "n_classes": 3, "d_hidden": 32, "n_layers": 2}
SPEC = {"builder": "tabular_mlp", "kwargs": KWARGS}


def plain_model() -> nn.Module:
    torch.manual_seed(0)
    return build_tabular_mlp(**KWARGS)


def torch_checkpoint_wrapper(model):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    for i, block in enumerate(model.blocks):
        model.blocks[i] = checkpoint_wrapper(block)
    return model


def fp8_then_ac(model):
    assert apply_fp8(model, "tensorwise", emulate=True) == [
        "blocks.1.fc"
    ]  # 20 input features: blocks.0 stays nn.Linear
    return apply_ac(model, "selective", block_classes=(MLPBlock,))


WRAPS = {
    "ac-full": lambda m: apply_ac(m, "full", block_classes=(MLPBlock,)),
    "ac-every-n": lambda m: apply_ac(m, "every-n", 2, block_classes=(MLPBlock,)),
    "torch-checkpoint-wrapper": torch_checkpoint_wrapper,
    "torch.compile": lambda m: torch.compile(m),  # an OptimizedModule (`_orig_mod.`); nothing compiles until called
    "fp8-then-ac": fp8_then_ac,
}


@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_clean_state_dict_names_weights_as_the_plain_model(wrap):
    reference = {k: v.clone() for k, v in plain_model().state_dict().items()}
    wrapped = WRAPS[wrap](plain_model())
    clean = clean_state_dict(wrapped)
    assert list(clean) == list(reference)
    for k, v in reference.items():
        assert torch.equal(clean[k], v), k


@pytest.fixture
def one_rank_group():
    from trainwise.train.parallel import free_port

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield
    tdist.destroy_process_group()


def test_ddp_and_fsdp2_weights_are_saved_plain_full_and_fp32(one_rank_group, tmp_path):
    from torch.distributed.device_mesh import init_device_mesh

    from trainwise.train.parallel import apply_ddp, apply_fsdp2

    reference = plain_model().state_dict()
    ddp = apply_ddp(apply_ac(plain_model(), "full", block_classes=(MLPBlock,)), torch.device("cpu"))
    assert next(iter(ddp.state_dict())).startswith("module.blocks.0.block.")
    assert list(clean_state_dict(ddp)) == list(reference)

    model = apply_ac(plain_model(), "full", block_classes=(MLPBlock,))
    blocks = list(model.blocks)
    fsdp = apply_fsdp2(model, init_device_mesh("cpu", (1,)), torch.bfloat16, torch.float32, True, blocks)
    with torch.no_grad():
        fsdp(torch.randn(4, 20))  # the root keeps its parameters gathered in bf16 after forward
    save_model(fsdp, tmp_path / "model", {"spec": SPEC})
    saved = load_file(tmp_path / "model" / MODEL_WEIGHTS)
    assert list(saved) == sorted(reference)
    for k, v in reference.items():  # the fp32 master weights, not the gathered bf16 copies
        assert saved[k].dtype == torch.float32 and torch.equal(saved[k], v), k


class Unknown(nn.Module):
    """A wrapper trainwise does not know: its level would end up in the saved names."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize(
    "model, spec, expected",
    [
        (lambda: Unknown(plain_model()), SPEC, "unexpected (10): ['inner.blocks.0.fc.bias'"),
        (
            plain_model,
            {"builder": "tabular_mlp", "kwargs": {**KWARGS, "d_hidden": 16}},
            "shape (9): ['blocks.0.fc.bias (32,) vs (16,)'",
        ),
    ],
)
def test_save_model_refuses_weights_the_spec_cannot_load_before_writing(model, spec, expected, tmp_path):
    with pytest.raises(TrainwiseError) as e:
        save_model(model(), tmp_path / "model", {"spec": spec})
    assert f"refusing to write {tmp_path / 'model' / MODEL_WEIGHTS}" in str(e.value) and expected in str(e.value), str(
        e.value
    )
    assert not (tmp_path / "model").exists()


def test_load_model_refuses_an_artifact_with_wrapper_names(tmp_path):
    """What trainwise wrote before this fix for a run with memory.ac = full: a clear refusal, not a crash."""
    model_dir = tmp_path / "model"
    save_model(plain_model(), model_dir, {"spec": SPEC})
    weights = load_file(model_dir / MODEL_WEIGHTS)
    save_file({k.replace("blocks.0.", "blocks.0.block."): v for k, v in weights.items()}, model_dir / MODEL_WEIGHTS)
    with pytest.raises(DataError) as e:
        load_model(model_dir, verify=False)
    assert f"{model_dir / MODEL_WEIGHTS} does not fit the architecture in {MODEL_JSON}" in str(e.value)
    assert "missing (4): ['blocks.0.fc.bias'" in str(e.value) and "unexpected (4): ['blocks.0.block.fc.bias'" in str(
        e.value
    )
    with pytest.raises(DataError, match="does not match the hash"):
        load_model(model_dir)  # and with the hash check (the default), the edited file is refused first


@pytest.mark.parametrize(
    "entry, expected",
    [
        (
            "misfit_spec_workload",
            [
                "the weights do not fit the model that model.json's spec rebuilds",
                "blocks.0.gru.weight_hh_l0 (96, 32) vs (48, 16)",
            ],
        ),
        (
            "no_builder_workload",
            [
                "model.json's spec cannot rebuild the model (builder 'tests.artifact_models:no_builder_workload' "
                "failed with kwargs {}: TypeError"
            ],
        ),
    ],
)
def test_a_spec_that_cannot_rebuild_the_model_is_refused_before_training(entry, expected, tmp_path, capsys):
    from trainwise.cli import main

    run = tmp_path / "run"
    code = main(
        [
            "train",
            "configs/tabular.toml",
            "--set",
            "workload.name=entry",
            "--set",
            f"workload.entry=tests.artifact_models:{entry}",
            "--set",
            "eval.slices=[]",
            "--set",
            "train.steps=2",
            "--set",
            "train.threads=1",
            "--set",
            "log.progress=false",
            "--set",
            "log.mlflow=false",
            "--run-dir",
            str(run),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert (
        err.startswith("trainwise train: error: workload 'sequence': ")
        and "make Workload.spec rebuild the model you train" in err
    ), err
    assert all(e in err for e in expected), err
    assert not run.exists()


def test_saved_model_loads_with_the_trained_values(tmp_path):
    model = apply_ac(plain_model(), "full", block_classes=(MLPBlock,))
    save_model(model, tmp_path / "model", {"spec": SPEC, "task": "classification"})
    loaded, meta = load_model(tmp_path)  # a run directory: its model/ is used
    x = torch.randn(8, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert not loaded.training and meta["task"] == "classification"
    assert json.loads((tmp_path / "model" / MODEL_JSON).read_text())["weights_sha256"] == meta["weights_sha256"]
