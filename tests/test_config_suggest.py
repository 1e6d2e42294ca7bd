"""A mistyped choice suggests the value most likely meant (config.closest_choices)."""

from __future__ import annotations

import pytest

from trainwise.config import load_config
from trainwise.errors import ConfigError


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("precision.policy=bf16", "bf16-mixed"),  # the recommended bf16 policy, not bf16-true (no fp32 master weights)
        ("precision.policy=fp16", "fp16-mixed"),
        ("precision.policy=fp8", "fp8-tensorwise"),
        ("precision.policy=BF16-True", "bf16-true"),
        ("precision.policy=fp16-mixed-precision", "fp16-mixed"),
        ("precision.policy=bf61-mixed", "bf16-mixed"),
        ("memory.ac=ful", "full"),
        ("parallel.strategy=fsdp", "fsdp2"),
    ],
)
def test_suggestion(override, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'\\?"):
        load_config(None, [override])


def test_unknown_field_suggestions_rank_prefixes_first():
    with pytest.raises(ConfigError, match=r"unknown field 'step'; did you mean steps,"):
        load_config(None, ["train.step=3"])
