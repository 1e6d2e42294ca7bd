"""The config arguments every verb that reads a config shares: `CONFIG`, `--set`, `--run-dir`.

One helper, so that `--set SECTION.FIELD=VALUE` means the same on every verb and always lands in
`args.overrides` (a list, empty when not given), ready for `trainwise.config.load_config(config,
overrides)`. A verb keeps its own help text where it says something the generic one cannot.
"""

from __future__ import annotations

import argparse

CONFIG_HELP = "TOML recipe, e.g. configs/lm-tiny.toml"
SET_HELP = "override one config field (repeatable), e.g. --set train.steps=100"
SET_METAVAR = "SECTION.FIELD=VALUE"


def add_config_args(
    parser: argparse.ArgumentParser,
    config_required: bool = True,
    run_dir: str | None = None,
    *,
    config: str | None = "positional",
    config_help: str = CONFIG_HELP,
    config_metavar: str | None = None,
    set_help: str | None = SET_HELP,
    set_metavar: str = SET_METAVAR,
) -> None:
    """Add the config arguments to `parser`; they parse into `args.config`, `args.overrides`
    and (when `run_dir` gives its help text) `args.run_dir`.

    config: "positional" (`CONFIG`, optional unless `config_required`), "flag" (`--config FILE`,
    never required) or None (the verb names its own input and takes only `--set`).
    config_metavar: how usage shows `--config` (default CONFIG).

    >>> p = argparse.ArgumentParser()
    >>> add_config_args(p, config_required=False, run_dir="where to write the run")
    >>> a = p.parse_args(["r.toml", "--set", "train.steps=2", "--set", "log.mlflow=false"])
    >>> (a.config, a.overrides, a.run_dir)
    ('r.toml', ['train.steps=2', 'log.mlflow=false'], None)
    """
    if config == "positional":
        parser.add_argument("config", nargs=None if config_required else "?", help=config_help)
    elif config == "flag":
        parser.add_argument("--config", default=None, metavar=config_metavar, help=config_help)
    elif config is not None:
        raise ValueError(f"config={config!r}: expected 'positional', 'flag' or None")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar=set_metavar, help=set_help)
    if run_dir is not None:
        parser.add_argument("--run-dir", help=run_dir)
