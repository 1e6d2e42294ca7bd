"""The model is checked against its task before any run directory exists (trainwise/train/preflight.py).

Each bad model below is a real nn.Module behind a real entry point; `trainwise train` must answer
one line naming the expected shape, exit 2, and leave no run directory (also under `launch`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import tiny_lm_config
from trainwise.cli import main
from trainwise.config import load_config
from trainwise.errors import ConfigError
from trainwise.train.preflight import check_model_output
from trainwise.workloads.base import Split, Workload, get_workload_fn

ROOT = Path(__file__).resolve().parents[2]


def blobs(n: int, seed: int, n_features: int = 8) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_features, generator=g)
    return Split(x, (x[:, 0] > 0).long())


class Flat(nn.Module):  # (B,): one score per example, as for a BCE loss
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(x).squeeze(-1)


class ThreeOutputs(nn.Module):  # 3 logits for 2 classes: trains, then `evaluate` used to crash
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(x)


class ReturnsTuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x), x


class WrongWidth(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(7, 2)

    def forward(self, x):
        return self.fc(x)


class NeedsValues(nn.Module):
    """Reads a value (`.item()`), which fake tensors cannot: the check runs it for real instead."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        if x.abs().max().item() > 1e6:
            raise ValueError("inputs out of range")
        return self.drop(self.fc(x)) + 1e-3 * torch.randn(len(x), 2)


def make(cls, classes=("a", "b")):
    def workload(cfg) -> Workload:
        return Workload(
            name=cls.__name__,
            task="classification",
            model=cls(),
            train=blobs(64, 0),
            val=blobs(32, 1),
            test=blobs(32, 2),
            spec={"builder": f"tests.train.test_preflight:{cls.__name__}", "kwargs": {}},
            info={"classes": list(classes)} if classes else {},
        )

    return workload


flat, three_outputs, returns_tuple, wrong_width, needs_values = (
    make(Flat),
    make(ThreeOutputs),
    make(ReturnsTuple),
    make(WrongWidth),
    make(NeedsValues),
)
three_outputs_no_classes = make(ThreeOutputs, classes=None)
one_class_listed = make(ThreeOutputs, classes=("a",))


class ByteScores(nn.Module):
    """An lm that returns (B, T): one score per position instead of a distribution over bytes."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(256, 4)

    def forward(self, x):
        return self.emb(x).sum(-1)


def lm_scores(cfg) -> Workload:
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(0, 256, (48, 17), generator=g)
    split = Split(seq[:, :-1], seq[:, 1:])
    return Workload(
        name="scores",
        task="lm",
        model=ByteScores(),
        train=split,
        val=split,
        test=split,
        spec={"builder": "tests.train.test_preflight:ByteScores", "kwargs": {}},
        info={"vocab_size": 256},
    )


SMALL = [
    "train.steps=2",
    "train.threads=1",
    "train.micro_batch_size=16",
    "train.global_batch_size=16",
    "log.progress=false",
    "log.mlflow=false",
]


def train_entry(capsys, tmp_path, entry: str):
    run = tmp_path / "run"
    argv = ["train", "--set", "workload.name=entry", "--set", f"workload.entry=tests.train.test_preflight:{entry}"]
    for s in SMALL:
        argv += ["--set", s]
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("")
    code = main(argv[:1] + [str(recipe)] + argv[1:] + ["--run-dir", str(run)])
    return code, capsys.readouterr().err, run


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            "flat",
            "the model's output has shape (16,); expected (16, 2): (B, n_classes) with n_classes = "
            "len(info['classes']) = 2",
        ),
        ("three_outputs", "the model's output has shape (16, 3); expected (16, 2)"),
        ("three_outputs_no_classes", "expected (16, 2): (B, n_classes) with n_classes = 1 + the largest target id 1"),
        ("returns_tuple", "the model returned tuple; expected one logits tensor of shape (B, n_classes)"),
        (
            "wrong_width",
            "the model's forward failed: RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x8 and 7x2)",
        ),
        ("one_class_listed", "targets range over [0, 1] but the task has 1 classes"),
        (
            "lm_scores",
            "the model's output has shape (16, 16); expected (16, 16, 256): (B, T, V) with V = vocab_size = 256",
        ),
    ],
)
def test_a_model_that_does_not_fit_its_task_is_refused_before_the_run_directory(tmp_path, capsys, entry, message):
    code, err, run = train_entry(capsys, tmp_path, entry)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists() and not any(tmp_path.glob(".run*")), "a run directory (or its temporary) was left behind"


def test_a_model_that_needs_real_values_is_checked_for_real_without_touching_the_rng(tmp_path, capsys):
    cfg = load_config(None, ["workload.name=entry", "workload.entry=tests.train.test_preflight:needs_values"])
    w = get_workload_fn("entry")(cfg)
    state = torch.get_rng_state()
    check_model_output(w, 16)
    assert torch.equal(state, torch.get_rng_state()) and w.model.training  # same random stream, mode restored
    code, err, run = train_entry(capsys, tmp_path, "needs_values")
    assert code == 0 and (run / "summary.json").is_file(), err


@pytest.mark.parametrize("name", ["tabular", "vision"])
def test_builtin_workloads_pass(name):
    cfg = load_config(None, [f"workload.name={name}", "model.n_layers=1", "model.d_model=8"])
    check_model_output(get_workload_fn(name)(cfg), 32)


def test_builtin_lm_passes_and_a_wrong_vocab_is_named():
    cfg = tiny_lm_config()
    w = get_workload_fn("lm")(cfg)
    check_model_output(w, 8)
    w.info["vocab_size"] = 300
    with pytest.raises(ConfigError, match=r"expected \(8, 32, 300\): \(B, T, V\) with V = vocab_size = 300"):
        check_model_output(w, 8)


@pytest.mark.slow
def test_every_rank_refuses_the_same_model_under_launch(tmp_path):
    """Two gloo ranks (DDP): both refuse, nobody waits on a collective, no run directory appears."""
    run = tmp_path / "run"
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("")
    sets = [
        a
        for s in [
            "workload.name=entry",
            "workload.entry=tests.train.test_preflight:three_outputs",
            "parallel.strategy=ddp",
            *SMALL,
            "train.micro_batch_size=8",
        ]
        for a in ("--set", s)
    ]
    cmd = [
        sys.executable,
        "-m",
        "trainwise.cli",
        "launch",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "0",
        str(recipe),
        *sets,
        "--run-dir",
        str(run),
    ]
    out = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "the model's output has shape (8, 3); expected (8, 2)" in out.stderr
    assert "Traceback" not in out.stderr and "ChildFailedError" not in out.stderr  # not torchrun's report either
    assert "no run directory was written" in out.stderr
    assert not run.exists()
