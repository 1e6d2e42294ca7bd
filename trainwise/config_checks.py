"""The rules a config field's value must meet beyond its type, applied when the config loads.

Three kinds, all declared on the field (trainwise.config.F) rather than listed here per field:

- numbers: every float is finite (TOML and `--set` both accept `inf` and `nan`); every integer
  lies within int64 (what torch and numpy can hold), then within the field's own min/max;
- `check=`: a function of the value that returns what is wrong with it, or None (URIs);
- `needs=Needs(...)`: the field has an effect only under some choice of another field. A value
  that differs from the default while that choice is not made is an error naming the choice, so
  `--set workload.path=data.csv` under the built-in tabular workload is refused instead of being
  silently ignored. A value equal to the default is never an error (resolved configs write every
  field out). `unused_fields` lists such values; the bench uses it to reset them per variant.

>>> Needs("memory.ac", ("every-n", "auto")).describe()
"memory.ac is 'every-n' or 'auto'"
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from dataclasses import dataclass
from typing import Any

from trainwise.errors import ConfigError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# numpy's legacy seeding (RandomState) and scikit-learn's random_state accept seeds below 2**32;
# torch.manual_seed takes more, but one seed must mean the same thing to all of them.
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Needs:
    """The field has an effect only when field `path` has one of `values` (with `unless`: none of them)."""

    path: str
    values: tuple
    unless: bool = False

    def current(self, cfg) -> Any:
        section, name = self.path.split(".")
        return getattr(getattr(cfg, section), name)

    def met(self, cfg) -> bool:
        return (self.current(cfg) in self.values) != self.unless

    def describe(self) -> str:
        names = [repr(v) for v in self.values]
        if self.unless:
            return (
                f"{self.path} is not {' or '.join(names)}"
                if len(names) < 3
                else f"{self.path} is none of {', '.join(names)}"
            )
        return f"{self.path} is {' or '.join(names)}"


def check_number(path: str, value: int | float, lo, hi) -> None:
    """Finite, within int64 for integers, within [lo, hi]; else one ConfigError naming the field."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path} = {value!r}: expected a finite number")
    if lo is not None and value < lo:
        raise ConfigError(f"{path} = {value!r}: must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path} = {value!r}: must be <= {hi}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ConfigError(f"{path} = {value}: expected an integer within int64 (-2**63 to 2**63 - 1)")


def unused_fields(cfg, fields_by_section: dict[str, dict]) -> list[tuple[str, Any, Needs]]:
    """(path, value, needs) of every field whose value differs from its default but has no effect."""
    out = []
    for section, fields in fields_by_section.items():
        obj = getattr(cfg, section)
        for name, f in fields.items():
            needs = f.metadata.get("needs")
            value = getattr(obj, name)
            if needs is not None and value != field_default(f) and not needs.met(cfg):
                out.append((f"{section}.{name}", value, needs))
    return out


def unused_message(path: str, value: Any, needs: Needs, cfg) -> str:
    return (
        f"{path} = {value!r} has no effect here: it is used only when {needs.describe()} "
        f"(here {needs.path} = {needs.current(cfg)!r}); remove it, or change {needs.path}"
    )


def field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


# ---------------------------------------------------------------------------------------------
# value checks for `check=`: each returns what is wrong, or None

# What trainwise.registry.store can reach: a local sqlite file, an MLflow server, or a database.
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file")


def tracking_uri_problem(uri: str) -> str | None:
    """'' (the default store) or a URI whose scheme the registry supports; sqlite needs a path.

    >>> print(tracking_uri_problem("foo://bar"))  # doctest: +NORMALIZE_WHITESPACE
    scheme 'foo' is not supported: expected sqlite:///PATH.db, http(s)://HOST:PORT (an MLflow server),
    a postgresql://, mysql:// or mssql:// database, or file:///PATH
    """
    if not uri:
        return None
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme not in TRACKING_SCHEMES:
        return (
            (
                f"scheme {scheme!r} is not supported: expected sqlite:///PATH.db, http(s)://HOST:PORT (an MLflow "
                "server), a postgresql://, mysql:// or mssql:// database, or file:///PATH"
            )
            if scheme
            else ("expected a URI such as sqlite:///mlflow.db or http://HOST:5000, not a bare path")
        )
    if scheme == "sqlite" and (not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///")):
        return "expected sqlite:///RELATIVE.db or sqlite:////ABSOLUTE.db (three slashes, then the file)"
    if scheme in ("http", "https") and not urllib.parse.urlparse(uri).hostname:
        return f"expected {scheme}://HOST[:PORT]"
    return None


def fsspec_url_problem(url: str) -> str | None:
    """'' (off), a local folder, or a URL whose protocol fsspec knows and whose package is installed."""
    if "://" not in url:
        return None
    protocol = url.split("://", 1)[0]
    # lazy: only a serve.log_dir URL needs fsspec; every verb loads its config through this module
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        return f"protocol {protocol!r} is unknown to fsspec (e.g. file://, memory://, s3://, gs://)"
    except ImportError as e:
        return f"protocol {protocol!r} needs a package that is not installed ({e})"
    return None


def entry_problem(entry: str) -> str | None:
    """'' or 'package.module:function'."""
    if not entry:
        return None
    module, sep, func = entry.partition(":")
    if not sep or not func.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        return "expected 'package.module:function'"
    return None


def accumulation_steps(global_batch_size: int, micro_batch_size: int, world_size: int = 1) -> int:
    """Micro-batches each process runs per optimizer step: the global batch is made of
    micro_batch_size x world_size x accumulation steps examples, or it is a ConfigError.

    The one place that rule lives: the config checks it at load (world size 1, the only one known
    then), `trainwise launch` before any process starts, and the trainer at its real world size.

    >>> accumulation_steps(32, 4, world_size=2)
    4
    """
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step == 0:
        return global_batch_size // per_step
    if world_size == 1:
        raise ConfigError(
            f"train.global_batch_size = {global_batch_size} is not a multiple of "
            f"train.micro_batch_size = {micro_batch_size}: the global batch must be "
            "micro_batch_size x world_size x accumulation steps"
        )
    raise ConfigError(
        f"train.global_batch_size = {global_batch_size} cannot be made from "
        f"train.micro_batch_size = {micro_batch_size} x world size {world_size} x accumulation steps; "
        f"make it a multiple of {per_step}"
    )
