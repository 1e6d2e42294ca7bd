"""Issue 16, items 11-12: absurd values and fields without effect are refused when the config
loads, through the command line: one line naming the field, exit code 2, nothing written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from trainwise.cli import main
from trainwise.config import all_fields, build_config, config_to_dict, load_config
from trainwise.config_checks import Needs, field_default
from trainwise.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TABULAR = [
    "--set",
    "model.n_layers=1",
    "--set",
    "model.d_model=8",
    "--set",
    "train.steps=3",
    "--set",
    "train.threads=1",
    "--set",
    "log.progress=false",
    "--set",
    "log.mlflow=false",
    "--set",
    "train.eval_every=0",
    "--set",
    "train.checkpoint_every=0",
]


def refused(capsys, tmp_path, *sets: str) -> str:
    """`trainwise train configs/tabular.toml` with the overrides: exit 2, one line, no run directory; returns the
    line."""
    argv = ["train", str(ROOT / "configs" / "tabular.toml"), *TABULAR]
    for s in sets:
        argv += ["--set", s]
    code = main(argv + ["--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    return err


@pytest.mark.parametrize(
    "sets,expected",
    [
        (["train.seed=1180591620717411303424"], "train.seed = 1180591620717411303424: must be <= 4294967295"),  # 2**70
        (
            ["train.micro_batch_size=100000000000000000000", "train.global_batch_size=100000000000000000000"],
            "train.micro_batch_size = 100000000000000000000: must be <=",
        ),
        (["train.lr=1e999"], "train.lr = inf: expected a finite number"),
        (["train.lr=nan"], "train.lr = nan: expected a finite number"),
        (["model.dropout=nan"], "model.dropout = nan: expected a finite number"),
        (["train.lr=1e300"], "train.lr = 1e+300: must be <= 10.0"),
        (
            ["log.mlflow=true", "registry.tracking_uri=foo://bar"],
            "registry.tracking_uri = 'foo://bar': scheme 'foo' is not supported",
        ),
        (
            ["registry.tracking_uri=sqlite://mlflow.db"],
            "registry.tracking_uri = 'sqlite://mlflow.db': expected sqlite:///",
        ),
        (
            ["serve.log_dir=nosuch://bucket/log"],
            "serve.log_dir = 'nosuch://bucket/log': protocol 'nosuch' is unknown to fsspec",
        ),
        (["memory.budget_gib=1e300"], "memory.budget_gib = 1e+300: must be <="),
    ],
)
def test_absurd_values_are_refused_at_load(sets, expected, capsys, tmp_path):
    assert expected in refused(capsys, tmp_path, *sets)


def test_numbers_in_a_recipe_are_checked_like_overrides(tmp_path, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text("[workload]\nname = 'tabular'\n[train]\nlr = inf\n")  # TOML has inf and nan literals
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run")]) == 2
    assert "train.lr = inf: expected a finite number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _paths_of(kind) -> list[str]:
    return [f"{s}.{n}" for s, fields in all_fields().items() for n, f in fields.items() if f.type is kind]


@pytest.mark.parametrize("path", _paths_of(float))
def test_every_float_field_must_be_finite(path):
    for text in ("inf", "-inf", "nan"):
        with pytest.raises(ConfigError, match=rf"^{path} = .*: expected a finite number"):
            load_config(None, [f"{path}={text}"])


@pytest.mark.parametrize("path", _paths_of(int))
def test_every_integer_field_stays_within_int64(path):
    with pytest.raises(
        ConfigError, match=rf"^{path} = 9223372036854775808: (must be <=|expected an integer within int64)"
    ):
        load_config(None, [f"{path}={2**63}"])


def test_non_finite_weights_are_never_saved_as_a_finished_model(tmp_path, capsys):
    # an entry workload whose model holds a NaN weight that training never touches (no gradient
    # reaches it), as a diverged run leaves its weights: the run trains, then must not be saved
    code = main(
        [
            "train",
            str(ROOT / "configs" / "tabular.toml"),
            "--set",
            "workload.name=entry",
            "--set",
            "workload.entry=tests.test_config_hardening:nan_weight_workload",
            *TABULAR,
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "hold NaN or infinity (first: spare)" in err.strip().splitlines()[-1]
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"status": "failed"' in summary and "hold NaN or infinity" in summary
    assert not (tmp_path / "run" / "model").exists()


class NanSpare(torch.nn.Module):
    """A linear classifier plus a parameter the forward never uses, holding NaN."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 2)
        self.spare = torch.nn.Parameter(torch.full((2,), float("nan")))

    def forward(self, x):
        return self.fc(x)


def nan_weight_workload(cfg):
    """Test-only entry point: the blobs of tests.helpers, on a NanSpare model."""
    from tests.helpers import overflow_workload

    return dataclasses.replace(
        overflow_workload(cfg), model=NanSpare(), spec={"builder": "tests.test_config_hardening:NanSpare", "kwargs": {}}
    )


# ---------------------------------------------------------------------------------------------
# item 12: a field without effect under the current choices


def test_a_file_path_under_the_builtin_workload_is_refused(capsys, tmp_path):
    err = refused(capsys, tmp_path, "workload.path=data.csv")
    assert (
        "workload.path = 'data.csv' has no effect here: it is used only when workload.name is 'file' (here "
        "workload.name = 'tabular')" in err
    )


def _other(f: dataclasses.Field, avoid=()):
    """A valid value of the field that is not its default (nor in `avoid`)."""
    default = field_default(f)
    if f.type is bool:
        return not default
    if f.metadata.get("choices"):
        return next(c for c in f.metadata["choices"] if c != default and c not in avoid)
    if f.type in (int, float):
        lo, hi = f.metadata.get("min") or 0, f.metadata.get("max")
        steps = (1, 2, 3) if f.type is int or hi is None else ((hi - lo) / 2, (hi - lo) / 3)
        return next(lo + d for d in steps if lo + d != default and lo + d not in avoid)
    if f.type is list:
        return ["auto"] if ["auto"] not in avoid else ["x"]
    return "pkg.mod:fn" if "pkg.mod:fn" not in avoid else "x"


def _literal(v) -> str:
    return (
        ("true" if v else "false")
        if isinstance(v, bool)
        else "[" + ",".join(f"'{x}'" for x in v) + "]"
        if isinstance(v, list)
        else str(v)
    )


def _choose(needs: Needs, met: bool) -> list[str]:
    """Overrides that make `needs` met (or not), with whatever the chosen field itself needs."""
    section, name = needs.path.split(".")
    f = all_fields()[section][name]
    if ((field_default(f) in needs.values) != needs.unless) == met:
        return []  # the default already makes that choice
    value = needs.values[0] if met != needs.unless else _other(f, avoid=needs.values)
    out = [f"{needs.path}={_literal(value)}"]
    if f.metadata.get("needs") and value != field_default(f):
        out = _choose(f.metadata["needs"], True) + out
    return out


NEEDY = [(f"{s}.{n}", f) for s, fields in all_fields().items() for n, f in fields.items() if f.metadata.get("needs")]


@pytest.mark.parametrize("path,f", NEEDY, ids=[p for p, _ in NEEDY])
def test_every_field_that_depends_on_a_choice_is_refused_without_it(path, f):
    needs = f.metadata["needs"]
    value = f"{path}={_literal(_other(f))}"
    with pytest.raises(ConfigError, match=rf"^{path} = .* has no effect here: it is used only when {needs.path} is"):
        load_config(None, _choose(needs, met=False) + [value])
    for sets in (
        _choose(needs, met=True) + [value],  # under the choice it is accepted
        _choose(needs, met=False) + [f"{path}={_literal(field_default(f))}"],
    ):  # its default is never an error
        try:
            load_config(None, sets)
        except ConfigError as e:  # another rule (workload.name = 'file' needs a path and a target too) may object
            assert "has no effect" not in str(e), sets


# ---------------------------------------------------------------------------------------------
# the bench: base settings that only some variants use


def test_bench_accepts_a_base_setting_some_variants_use_and_resets_it_in_the_others(tmp_path):
    from trainwise.bench.runner import plan

    recipe = tmp_path / "r.toml"
    recipe.write_text((ROOT / "configs" / "lm-tiny.toml").read_text() + "init_scale = 1024.0\n")  # in [precision]
    _, variants = plan(
        recipe, ["precision.policy=fp32,fp16-mixed", "memory.ac=none,every-n", "memory.ac_every=2,3"], [], []
    )
    by_label = {v.label: v for v in variants if v.kind == "trainwise"}
    assert by_label["fp16-mixed, ac=none, ac_every=2"].cfg.precision.init_scale == 1024.0
    assert by_label["fp32, ac=none, ac_every=2"].cfg.precision.init_scale == 65536.0  # no effect there: the default
    # ac_every has no effect under ac=none: its two values would train the same model, so one variant remains
    assert "fp32, ac=none" not in by_label and not any(k.endswith("ac=none, ac_every=3") for k in by_label)
    assert {"fp32, ac=every-n, ac_every=2", "fp32, ac=every-n, ac_every=3"} <= set(by_label)
    for v in variants:  # each variant's config.toml holds only what has an effect: the worker loads it back
        assert build_config(config_to_dict(v.cfg)) == v.cfg


def test_bench_refuses_a_setting_no_variant_uses(tmp_path):
    from trainwise.bench.runner import plan

    with pytest.raises(
        ConfigError, match="no variant of this bench uses it: precision.init_scale = 1024.0 has no effect here"
    ):
        plan(ROOT / "configs" / "lm-tiny.toml", ["precision.policy=fp32,bf16-mixed"], [], ["precision.init_scale=1024"])
