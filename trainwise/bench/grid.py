"""The variants of a bench: a cartesian grid (or an explicit list) of config overrides.

Every variant is validated as a whole config before anything runs, so a bad grid fails at once
with the config's own message (unknown field with the closest names, a value the field does not
accept) and no variant is started.

A field that has an effect only under some choice (trainwise.config_checks.Needs: e.g.
precision.init_scale only under fp16-mixed) may be set in the base config or the grid when at
least one variant makes that choice; the variants that do not make it get the field's default, so
their config (and hash) holds only what changes their training. A field that has an effect in no
variant is an error, as it is for `trainwise train`.

>>> [v.label for v in expand(["precision.policy=fp32,bf16-mixed", "memory.ac=none,full"], [])]
['fp32, ac=none', 'fp32, ac=full', 'bf16-mixed, ac=none', 'bf16-mixed, ac=full']
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from trainwise.config import Config, all_fields, build_config, config_hash, config_to_dict, parse_override, reset_fields
from trainwise.config_checks import unused_fields, unused_message
from trainwise.errors import ConfigError

# Fields that do not change what a variant trains: left out of its identity (the config hash).
NOT_IDENTITY = (
    "log.progress",
    "log.mlflow",
    "bench.tolerance",
    "bench.confidence",
    "bench.target_val_loss",
    "bench.memory_budget_gib",
    "bench.repeats",
    "bench.cost_per_hour",
    "bench.baseline",
    "bench.timing_rounds",
    "bench.timing_steps_per_round",
    "bench.max_ratio_ci",
    "bench.max_load_per_core",
    "bench.control_seeds",
    "bench.prune_slowdown",
    "bench.budget_min",
    "bench.min_gain",
)
CONTROL = {"precision.policy": "fp32"}


@dataclass
class Variant:
    overrides: dict[str, str]  # "section.field" -> value text, in grid order
    label: str
    cfg: Config | None = None
    hash: str = ""
    is_control: bool = False
    # or "baseline" (the plain-PyTorch loop), or "control-seed" (the control with another seed: the noise floor)
    kind: str = "trainwise"
    tags: list[str] = field(default_factory=list)

    @property
    def dir_name(self) -> str:
        slug = re.sub(r"[^a-zA-Z0-9.-]+", "_", self.label).strip("_") or "base"
        return f"{slug}-{self.hash[:8]}"

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "overrides": self.overrides,
            "config_hash": self.hash,
            "is_control": self.is_control,
            "kind": self.kind,
        }


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
        raise ConfigError(
            str(e).replace("--set", flag).replace("train.steps=100", "precision.policy=fp32,bf16-mixed")
        ) from None


def parse_variant(item: str) -> dict[str, str]:
    """'precision.policy=bf16-mixed;memory.ac=full' -> {'precision.policy': 'bf16-mixed', 'memory.ac': 'full'}."""
    out = {}
    for part in [p for p in item.split(";") if p.strip()]:
        section, name, text = _parse(part.strip(), "--variant")
        out[f"{section}.{name}"] = text.strip()
    if not out:
        raise ConfigError(f"--variant {item!r}: no overrides; expected section.field=value[;section.field=value...]")
    return out


def expand(
    grid_items: list[str],
    variant_items: list[str],
    base_data: dict | None = None,
    base_overrides: list[str] = (),
    source: str = "config",
) -> list[Variant]:
    """The validated variants: the grid's cartesian product, then the explicit ones; the fp32
    control (the base config with precision.policy = fp32) is added first when no variant is it."""
    if not grid_items and not variant_items:
        raise ConfigError(
            "empty grid: give at least one --grid section.field=v1,v2 (e.g. --grid precision.policy=fp32,bf16-mixed) "
            "or --variant"
        )
    grid = parse_grid(grid_items)
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] if grid else []
    combos += [parse_variant(v) for v in variant_items]
    base_data = base_data or {}
    variants, seen = [], set()
    control_cfg, control_unused = _resolve(base_data, base_overrides, CONTROL, source)
    control_hash = variant_hash(control_cfg)
    resolved = [(overrides, *_resolve(base_data, base_overrides, overrides, source)) for overrides in combos]
    _refuse_fields_without_effect([(control_cfg, control_unused)] + [(cfg, unused) for _, cfg, unused in resolved])
    if len({control_cfg.precision.allow_tf32} | {cfg.precision.allow_tf32 for _, cfg, _ in resolved}) > 1:
        # MFU divides by one fp32 peak, measured once per bench under one setting (trainwise.env.collect_info)
        raise ConfigError(
            "precision.allow_tf32 differs between variants: a bench measures its fp32 peak under one TF32 setting; "
            "run one bench with precision.allow_tf32 = true and one without"
        )
    for overrides, cfg, unused in resolved:
        h = variant_hash(cfg)
        if h in seen:
            continue  # the same training twice (e.g. an explicit variant equal to a grid point)
        seen.add(h)
        overrides = {k: v for k, v in overrides.items() if k not in unused}  # reset: not what this variant changes
        variants.append(Variant(overrides, make_label(overrides), cfg, h, is_control=h == control_hash))
    if not any(v.is_control for v in variants):
        variants.insert(0, Variant(dict(CONTROL), "fp32 control", control_cfg, control_hash, is_control=True))
    return variants


SEED_TAG = "control seed "  # + its rank: 0 for the control itself, 1, 2, ... for its other seeds


def control_seeds(
    variants: list[Variant], n_seeds: int, base_data: dict | None = None, base_overrides=(), source: str = "config"
) -> list[Variant]:
    """The fp32 control again with seeds train.seed + 1, ..., + n_seeds - 1: what two fp32 runs that
    differ only by chance differ by is the noise floor of every quality verdict.

    Returns the variants to add; the control and every seed are tagged (SEED_TAG + rank, read back
    by `seed_hashes`). A seed that some variant already trains (e.g. --variant train.seed=1) is not
    trained twice: that variant's run serves as the seed."""
    control = next(v for v in variants if v.is_control)
    control.tags.append(f"{SEED_TAG}0")
    known = {v.hash: v for v in variants}
    new = []
    for k in range(1, n_seeds):
        seed = str(control.cfg.train.seed + k)
        cfg, _ = _resolve(base_data or {}, base_overrides, {**CONTROL, "train.seed": seed}, source)
        h = variant_hash(cfg)
        if h not in known:
            known[h] = Variant(
                {**control.overrides, "train.seed": seed}, f"fp32 control (seed {seed})", cfg, h, kind="control-seed"
            )
            new.append(known[h])
        known[h].tags.append(f"{SEED_TAG}{k}")
    return new


def seed_hashes(variants: list[Variant]) -> list[str]:
    """The config hashes of the control's seeds, the control's own first."""
    ranked = [(int(t[len(SEED_TAG) :]), v.hash) for v in variants for t in v.tags if t.startswith(SEED_TAG)]
    return [h for _, h in sorted(ranked)]


def _resolve(base_data: dict, base_overrides, overrides: dict[str, str], source: str) -> tuple[Config, dict[str, str]]:
    """The variant's config with every field that has no effect in it back at its default, and
    {path: why} of those fields."""
    sets = list(base_overrides) + [f"{k}={v}" for k, v in overrides.items()]
    try:
        cfg = build_config(base_data, sets, source, unused="keep")
    except ConfigError as e:
        what = ", ".join(f"{k}={v}" for k, v in overrides.items())
        raise ConfigError(f"variant [{what}]: {e}") from None
    unused = {path: unused_message(path, value, needs, cfg) for path, value, needs in unused_fields(cfg, all_fields())}
    return reset_fields(cfg, list(unused)), unused


def _refuse_fields_without_effect(resolved: list[tuple[Config, dict[str, str]]]) -> None:
    """A field set for the bench must have an effect in at least one variant (the control included)."""
    needs = {
        f"{s}.{n}": f.metadata["needs"]
        for s, fields in all_fields().items()
        for n, f in fields.items()
        if f.metadata.get("needs")
    }
    for _, unused in resolved:
        for path, why in unused.items():
            if not any(needs[path].met(cfg) for cfg, _ in resolved):
                raise ConfigError(f"no variant of this bench uses it: {why}")


def identity(cfg: Config) -> dict:
    """What makes two benches the same bench: the base config, whatever the grid."""
    d = config_to_dict(cfg)
    return {"base_config_hash": variant_hash(cfg), "workload": d["workload"]["name"]}
