"""The variants of a bench: a cartesian grid (or an explicit list) of config overrides.

Every variant is validated as a whole config before anything runs, so a bad grid fails at once
with the config's own message (unknown field with the closest names, a value the field does not
accept) and no variant is started.

>>> [v.label for v in expand(["precision.policy=fp32,bf16-mixed", "memory.ac=none,full"], [])]
['fp32, ac=none', 'fp32, ac=full', 'bf16-mixed, ac=none', 'bf16-mixed, ac=full']
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from trainwise.config import Config, build_config, config_hash, config_to_dict, parse_override
from trainwise.errors import ConfigError

# Fields that do not change what a variant trains: left out of its identity (the config hash).
NOT_IDENTITY = ("log.progress", "log.mlflow", "bench.tolerance", "bench.confidence", "bench.target_val_loss",
                "bench.memory_budget_gib", "bench.repeats", "bench.cost_per_hour", "bench.baseline",
                "bench.timing_rounds", "bench.timing_steps_per_round", "bench.max_ratio_ci", "bench.max_load_per_core")
CONTROL = {"precision.policy": "fp32"}


@dataclass
class Variant:
    overrides: dict[str, str]  # "section.field" -> value text, in grid order
    label: str
    cfg: Config | None = None
    hash: str = ""
    is_control: bool = False
    kind: str = "trainwise"  # or "baseline": the plain-PyTorch loop
    tags: list[str] = field(default_factory=list)

    @property
    def dir_name(self) -> str:
        slug = re.sub(r"[^a-zA-Z0-9.-]+", "_", self.label).strip("_") or "base"
        return f"{slug}-{self.hash[:8]}"

    def to_dict(self) -> dict:
        return {"label": self.label, "overrides": self.overrides, "config_hash": self.hash, "is_control": self.is_control, "kind": self.kind}


def variant_hash(cfg: Config) -> str:
    return config_hash(cfg, ignore=NOT_IDENTITY)


def make_label(overrides: dict[str, str]) -> str:
    if not overrides:
        return "base config"
    parts = [v if k == "precision.policy" else f"{k.split('.')[1]}={v}" for k, v in overrides.items()]
    return ", ".join(parts)


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """['section.field=v1,v2', ...] -> {'section.field': ['v1', 'v2']}, paths checked."""
    grid: dict[str, list[str]] = {}
    for item in items:
        section, name, text = _parse(item, "--grid")
        key = f"{section}.{name}"
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--grid {item!r}: no values; expected {key}=VALUE1,VALUE2,...")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid {key}=v1,v2")
        grid[key] = list(dict.fromkeys(values))
    return grid


def _parse(item: str, flag: str) -> tuple[str, str, str]:
    try:
        return parse_override(item)  # its errors name the closest valid sections and fields
    except ConfigError as e:
        raise ConfigError(str(e).replace("--set", flag).replace("train.steps=100", "precision.policy=fp32,bf16-mixed")) from None


def parse_variant(item: str) -> dict[str, str]:
    """'precision.policy=bf16-mixed;memory.ac=full' -> {'precision.policy': 'bf16-mixed', 'memory.ac': 'full'}."""
    out = {}
    for part in [p for p in item.split(";") if p.strip()]:
        section, name, text = _parse(part.strip(), "--variant")
        out[f"{section}.{name}"] = text.strip()
    if not out:
        raise ConfigError(f"--variant {item!r}: no overrides; expected section.field=value[;section.field=value...]")
    return out


def expand(grid_items: list[str], variant_items: list[str], base_data: dict | None = None, base_overrides: list[str] = (), source: str = "config") -> list[Variant]:
    """The validated variants: the grid's cartesian product, then the explicit ones; the fp32
    control (the base config with precision.policy = fp32) is added first when no variant is it."""
    if not grid_items and not variant_items:
        raise ConfigError("empty grid: give at least one --grid section.field=v1,v2 (e.g. --grid precision.policy=fp32,bf16-mixed) or --variant")
    grid = parse_grid(grid_items)
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    combos += [parse_variant(v) for v in variant_items]
    base_data = base_data or {}
    variants, seen = [], set()
    control_cfg = _resolve(base_data, base_overrides, CONTROL, source)
    control_hash = variant_hash(control_cfg)
    for overrides in combos:
        cfg = _resolve(base_data, base_overrides, overrides, source)
        h = variant_hash(cfg)
        if h in seen:
            continue  # the same training twice (e.g. an explicit variant equal to a grid point)
        seen.add(h)
        variants.append(Variant(overrides, make_label(overrides), cfg, h, is_control=h == control_hash))
    if not any(v.is_control for v in variants):
        variants.insert(0, Variant(dict(CONTROL), "fp32 control", control_cfg, control_hash, is_control=True))
    return variants


def _resolve(base_data: dict, base_overrides, overrides: dict[str, str], source: str) -> Config:
    sets = list(base_overrides) + [f"{k}={v}" for k, v in overrides.items()]
    try:
        return build_config(base_data, sets, source)
    except ConfigError as e:
        what = ", ".join(f"{k}={v}" for k, v in overrides.items())
        raise ConfigError(f"variant [{what}]: {e}") from None


def identity(cfg: Config) -> dict:
    """What makes two benches the same bench: the base config, whatever the grid."""
    d = config_to_dict(cfg)
    return {"base_config_hash": variant_hash(cfg), "workload": d["workload"]["name"]}
