"""Config: loading, overrides, validation errors (through the CLI, with exit codes), recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainwise.cli import main
from trainwise.config import config_to_toml, explain, field_paths, load_config
from trainwise.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_round_trips(recipe, tmp_path):
    cfg = load_config(recipe)
    # the resolved TOML written to run directories loads back to the same config
    tmp = tmp_path / recipe.name
    tmp.write_text(config_to_toml(cfg))
    again = load_config(tmp)
    assert again == cfg


def test_overrides_are_typed():
    cfg = load_config(
        None,
        [
            "train.steps=7",
            "train.lr=0.5",
            "train.compile=true",
            "memory.block_classes=A,B",
            "precision.policy=bf16-mixed",
        ],
    )
    assert (cfg.train.steps, cfg.train.lr, cfg.train.compile, cfg.memory.block_classes, cfg.precision.policy) == (
        7,
        0.5,
        True,
        ["A", "B"],
        "bf16-mixed",
    )


def test_explain_lists_every_field_with_help():
    text = explain()
    for path in field_paths():
        assert path in text
    assert "train.steps = 200  optimizer steps" in text


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_key_names_the_closest_fields(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nstep = 10\n")
    code, _, err = run_cli(capsys, "config", str(bad))
    assert code == 2
    assert "unknown field 'step'" in err and "did you mean steps" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_unknown_section_in_override(capsys):
    code, _, err = run_cli(capsys, "config", "--set", "trian.steps=3")
    assert code == 2 and "unknown section 'trian'" in err and "train" in err


def test_wrong_type(capsys):
    code, _, err = run_cli(capsys, "config", "--set", "train.steps=ten")
    assert code == 2 and "train.steps = 'ten': expected an integer" in err


def test_bad_value_out_of_range_and_choices(capsys):
    code, _, err = run_cli(capsys, "config", "--set", "train.lr=-1")
    assert code == 2 and "train.lr = -1.0: must be >= 0.0" in err
    code, _, err = run_cli(capsys, "config", "--set", "precision.policy=bf16mixed")
    assert code == 2 and "expected one of" in err and "did you mean 'bf16-mixed'" in err


def test_missing_and_malformed_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml does not exist" in err
    bad = tmp_path / "broken.toml"
    bad.write_text("[train\nsteps = 3")
    code, _, err = run_cli(capsys, "train", str(bad), "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "is not valid TOML" in err
    assert not (tmp_path / "run").exists()


def test_relations_are_checked():
    with pytest.raises(ConfigError, match="global_batch_size = 10 is not a multiple of train.micro_batch_size = 4"):
        load_config(None, ["train.micro_batch_size=4", "train.global_batch_size=10"])
    with pytest.raises(ConfigError, match="d_model = 30 is not divisible by model.n_heads = 4"):
        load_config(None, ["model.d_model=30"])
