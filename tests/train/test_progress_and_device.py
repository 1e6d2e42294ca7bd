"""Progress output and device checks."""

from __future__ import annotations

import io

import pytest
import torch

from trainwise.cli import main
from trainwise.errors import DeviceError
from trainwise.train.precision import get_policy
from trainwise.train.progress import Progress


def test_progress_lines_show_step_loss_rate_and_eta():
    out = io.StringIO()
    p = Progress(total_steps=40, start_step=0, stream=out, unit="tok")
    for step in range(1, 41):
        p.update(step, loss=2.5, rate=1234.0, val_loss=2.75 if step == 40 else None)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 21  # about 20 lines per run when not a terminal
    assert lines[-1].startswith("step 40/40 loss 2.5000 val 2.7500 1,234 tok/s") and "ETA 0:00:00" in lines[-1]


def test_cuda_asked_without_cuda(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["config", "--set", "train.device=cuda"])
    assert code == 0  # the config is valid; the device is checked when training starts
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\ndevice = 'cuda'\n")
    code = main(["train", str(recipe), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "train.device = 'cuda' but no CUDA device is available" in err
    assert not (tmp_path / "run").exists()


def test_fp8_refused_on_a_gpu_without_fp8(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    with pytest.raises(DeviceError, match="needs FP8 matmuls \\(sm_89 or newer.*A100 is sm_80"):
        get_policy("fp8-tensorwise", torch.device("cuda"))
    assert get_policy("bf16-mixed", torch.device("cuda")).name == "bf16-mixed"
