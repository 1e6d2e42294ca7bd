"""The names of the precision policies and activation-checkpointing modes, in a module without
torch: the config lists them as its allowed values and must load in milliseconds (importing torch
takes seconds). The registries that implement them use these names: `precision.POLICIES` is built
from `POLICY_NAMES` (and refuses to import if one lacks a policy), and `ac.AC_COST_ORDER` is this one.
"""

from __future__ import annotations

POLICY_NAMES = ("fp32", "bf16-mixed", "fp16-mixed", "bf16-true", "fp8-tensorwise", "fp8-rowwise")

# Cheapest first, by forward matmul FLOPs recomputed in backward: 0, 0 (pointwise only), 1/n, all.
AC_COST_ORDER = ("none", "selective", "every-n", "full")
