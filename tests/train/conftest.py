"""Fixtures shared by the trainer's fault tests."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.train.faults")  # its asserts report values, as a test's do

from tests.helpers import tiny_lm_config  # noqa: E402
from trainwise.train.loop import train  # noqa: E402


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> Path:
    """The tiny LM trained 8 steps in one go (checkpoints at 4 and 8): what every run that
    survived a fault must equal."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    train(tiny_lm_config(), run_dir)
    return run_dir
