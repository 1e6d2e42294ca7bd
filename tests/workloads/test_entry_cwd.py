"""An entry point resolves from the folder trainwise runs in, as `python -m` would, for train and later evaluate."""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest

from trainwise.cli import main
from trainwise.rundir import load_model

WORKLOAD = textwrap.dedent("""
    import torch
    from torch import nn

    from trainwise.workloads.base import Split, Workload


    class Net(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, width), nn.Linear(width, 2)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))


    def split(n, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 4, generator=g)
        return Split(x, (x.sum(1) > 0).long())


    def make_workload(cfg):
        return Workload(name="cwd", task="classification", model=Net(8),
                        train=split(128, 0), val=split(64, 1), test=split(64, 2),
                        spec={"builder": "PKG.workload:Net", "kwargs": {"width": 8}}, info={"classes": ["neg", "pos"]})
""")


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """tmp_path holding <pkg>/workload.py (a namespace package, no __init__.py), as the current folder."""
    pkg = f"userpkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "workload.py").write_text(WORKLOAD.replace("PKG", pkg))
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert str(tmp_path) not in sys.path and "" not in sys.path
    yield pkg
    sys.path[:] = before
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


def test_entry_point_in_the_current_folder_trains_and_evaluates(user_folder, tmp_path, capsys):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        "[train]\nsteps = 4\nthreads = 1\nmicro_batch_size = 32\nglobal_batch_size = 32\n[log]\nprogress = "
        "false\nmlflow = false\n"
    )
    code = main(
        [
            "train",
            str(recipe),
            "--set",
            "workload.name=entry",
            "--set",
            f"workload.entry={user_folder}.workload:make_workload",
            "--run-dir",
            "run",
        ]
    )
    assert code == 0, capsys.readouterr().err
    # a later process rebuilds the model from model.json's builder: forget the module, as a new process would
    for name in [m for m in sys.modules if m.startswith(user_folder)]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]
    model, meta = load_model(tmp_path / "run")
    assert type(model).__name__ == "Net" and meta["spec"]["builder"] == f"{user_folder}.workload:Net"
    assert main(["evaluate", "run", "--no-robustness", "--bootstrap", "20"]) == 0, capsys.readouterr().err


def test_a_missing_entry_module_names_the_folder_searched(user_folder, tmp_path, capsys):
    (tmp_path / "recipe.toml").write_text("")
    code = main(
        [
            "train",
            "recipe.toml",
            "--set",
            "workload.name=entry",
            "--set",
            "workload.entry=nowhere_pkg.workload:make_workload",
            "--run-dir",
            "run",
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and f"No module named 'nowhere_pkg' (looked in the current folder {tmp_path} and the installed packages)" in err
    ), err
    assert not (tmp_path / "run").exists()
