"""The README's promises: its commands exist, CI runs exactly its test command, and the quickstart
runs as written on a table the repository does not ship."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tables import write_churn_csv
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
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci[-1] == "make test" and ci[-1] in README


# ---------------------------------------------------------------------------------------------
# The quickstart, run as written

QUICKSTART = "## Quickstart: your own model and data"
TRAINWISE = str(Path(sys.executable).with_name("trainwise"))
SMALL_RUN = "--set train.steps=30 --set train.threads=1 --set log.progress=false"


def quickstart_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block in the quickstart section, in order."""
    section = README[README.index(QUICKSTART) :]
    section = section[: section.index("\n## ", len(QUICKSTART))]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def shell_commands(block: str) -> list[str]:
    """Commands of a bash block: continuation lines joined, trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [
        re.sub(r"\s+#.*$", "", line).strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def resolve_placeholders(command: str, runs: list[tuple[str, str]]) -> str:
    """runs/<run> -> the latest run; runs/<fp32-run>, runs/<bf16-run> -> the latest run of that precision."""

    def real(match: re.Match) -> str:
        name = match.group(1)
        candidates = [
            path for path, precision in runs if name == "run" or precision.startswith(name.removesuffix("-run"))
        ]
        assert candidates, f"README placeholder <{name}> matches none of the runs trained so far: {runs}"
        return candidates[-1]

    return re.sub(r"runs/<([\w-]+)>", real, command)


@pytest.mark.slow
def test_the_quickstart_runs_as_written(tmp_path):
    """Every command of the quickstart, in a fresh folder with only `configs/`, the user's package
    (the README's Python block) and a table the repository does not ship (with `?` for missing numbers)."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    write_churn_csv(tmp_path / "data" / "customers.csv", n_missing=7)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_LOGGING_LEVEL")}
    env["MLFLOW_TRACKING_URI"] = (
        f"sqlite:///{tmp_path}/mlflow.db"  # a fresh store: its creation must not log INFO lines
    )
    runs: list[tuple[str, str]] = []
    outputs: dict[str, str] = {}
    blocks = quickstart_blocks()
    assert [lang for lang, _ in blocks].count("python") >= 1 and len(blocks) >= 4, blocks
    for lang, text in blocks:
        if lang == "python":
            first = text.splitlines()[0]
            assert first.startswith("# ") and first.endswith(".py"), (
                f"a Python block must start with '# path/file.py': {first!r}"
            )
            target = tmp_path / first[2:].strip()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            continue
        for command in shell_commands(text):
            assert command.startswith(".venv/bin/trainwise "), command
            command = resolve_placeholders(command.replace(".venv/bin/trainwise", TRAINWISE, 1), runs)
            if " train " in command:
                command += " " + SMALL_RUN
            out = subprocess.run(
                command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
            )
            both = out.stdout + out.stderr
            allowed = (
                (0, 1, 3) if " compare " in command else (0,)
            )  # compare: 1 gate failed, 3 inconclusive; answers, not errors
            assert out.returncode in allowed, f"{command}\n{both[-3000:]}"
            assert "Traceback" not in both and " INFO " not in both, f"{command}\n{both[-3000:]}"
            outputs[command] = both
            if " train " in command:
                run_dir = re.search(r"^run: (\S+)$", out.stdout, re.M).group(1)
                runs.append((run_dir, json.loads((tmp_path / run_dir / "summary.json").read_text())["precision"]))
    verbs = [re.match(rf"{re.escape(TRAINWISE)} (\w+)", c).group(1) for c in outputs]
    assert {"train", "evaluate", "compare", "register"} <= set(verbs), verbs
    check = next(o for c, o in outputs.items() if " data check " in c)
    assert "FOUND 7 missing cells in monthly_charges ('?' x7)" in check
    csv_train = next(o for c, o in outputs.items() if "workload.name=file" in c)
    assert "numeric column 'monthly_charges': 7 cells read as missing ('?' x7)" in csv_train
    evaluated = next(c for c in outputs if " evaluate " in c).split(" evaluate ")[1].split()[0]
    assert (tmp_path / evaluated / "eval" / "metrics.json").is_file()
    # `trainwise history NAME --json | head`: the reader leaves early; no BrokenPipe traceback
    name = re.search(r"--name (\S+)", next(c for c in outputs if " register " in c)).group(1)
    p = subprocess.Popen(
        [TRAINWISE, "history", name, "--json"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141 and "Traceback" not in err, err
