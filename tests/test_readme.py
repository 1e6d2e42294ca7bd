"""The README's promises: its commands exist, and CI runs exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

from trainwise.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def subcommands(parser) -> dict:
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def test_every_trainwise_command_in_the_readme_exists():
    verbs = subcommands(build_parser())
    used = set(re.findall(r"(?:`|bin/)trainwise (\w[\w-]*)", README))
    used -= {"demo"} if "demo" not in verbs else set()
    missing = sorted(v for v in used if v not in verbs)
    assert not missing, f"README names verbs that do not exist: {missing}"
    for nested in re.findall(r"trainwise (\w+) (\w+) ", README):
        group = verbs.get(nested[0])
        if group is not None and subcommands(group):
            assert nested[1] in subcommands(group) or nested[1].isupper(), nested


def test_make_targets_and_ci():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo:", "test:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "make demo" in README and "make test" in README
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci[-1] == "make test" and ci[-1] in README
