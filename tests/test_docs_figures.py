"""Every figure quoted in docs/ and README.md comes from a committed benchmark result, or says
where else it comes from (issue 16, item 17).

What counts as "a figure" (outside code blocks, inline code, link targets and HTML comments):
  - a number with a unit of measurement: time (ns, µs, ms, s, min, h), size (B, KB/KiB ... TB/TiB,
    bytes), a rate (anything per second: req/s, tokens/s, GFLOP/s), FLOP, a ratio (11.5x), or a
    percentage (12%, 3.4 pp);
  - a decimal number with three or more significant digits (0.7049, 61.7): only measurements are
    written that precisely;
  - a number followed by its bracketed spread, the benchmarks' "median [min, max]" (2011 [1862, 2701]).
Not figures: bare counts and settings (64 clients, 2,000 simulated tables, at most 5,000 rows: the
design of a check, or a default), numbers inside words or identifiers (fp16, p99, sm_89,
3x224x224), versions (2.13.0, and a number right after Python, CUDA, torch, version or v),
scientific notation (1e-4), and confidence levels ("95% CI", "90% interval"): those are
parameters, not results.

A figure passes when some number in benchmarks/*.json or benchmarks/*.md (the committed results,
read at test time) rounds to it at the precision it is quoted with, after the unit conversions its
unit allows (a share -> %, seconds -> ms, bytes -> MiB, ...). A figure that comes from elsewhere (a
datasheet, a paper, a file format's definition, a dataset's size) is marked as an external citation:
a Markdown footnote right after it (after its unit), whose definition starts with "External:":

    an H100 SXM's dense bf16 peak is 989 TFLOP/s[^h100].

    [^h100]: External: NVIDIA H100 Tensor Core GPU datasheet.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

UNITS = {  # unit (lower-cased) -> factors that turn a committed number into the quoted one
    "ns": (1, 1e9, 1e6, 1e3),
    "µs": (1, 1e6, 1e3, 1e-3),
    "us": (1, 1e6, 1e3, 1e-3),
    "ms": (1, 1e3, 1e-3, 1e-6),
    "s": (1, 1e-3, 1e3),
    "sec": (1, 1e-3),
    "seconds": (1, 1e-3),
    "min": (1, 1 / 60),
    "minutes": (1, 1 / 60),
    "h": (1, 1 / 3600),
    "hours": (1, 1 / 3600),
    "b": (1,),
    "bytes": (1,),
    "kb": (1, 1e-3),
    "kib": (1, 2**-10),
    "mb": (1, 1e-6, 2**-20),
    "mib": (1, 2**-20, 1e-6),
    "gb": (1, 1e-9, 2**-30),
    "gib": (1, 2**-30, 1e-9),
    "tb": (1, 1e-12, 2**-40),
    "tib": (1, 2**-40, 1e-12),
    "%": (1, 100),
    "pp": (1, 100),
    "x": (1,),
    "×": (1,),
    "flop": (1, 1e-9, 1e-12),
}
UNIT_RE = (
    r"(?P<unit>%|×|x(?![\w])|\s?(?:ns|µs|us|ms|sec|seconds|s|min|minutes|h|hours|bytes|B|KB|KiB|MB|MiB|GB|GiB|TB|TiB|pp|"
    r"[GTMK]?FLOP(?:s)?(?:/s)?|[A-Za-z]+/s)(?![\w/]))"
)
NUMBER_RE = re.compile(
    # not inside words, versions, 3x224
    r"(?<![\w.^])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d,]*\.\d)(?![\w\-]*\d)"
    r"(?:" + UNIT_RE + r")?"
    r"(?P<spread>\s\[\s?-?[\d.,]+\s?,\s?-?[\d.,]+\s?\])?"
    r"(?:\*\*)?(?P<cite>\[\^[\w-]+\])?"
)
VERSION_OF = re.compile(r"(?:Python|CUDA|torch|PyTorch|version|v)\s?$", re.I)
CONFIDENCE_LEVEL = re.compile(r"\s*(?:one-sided\s+|two-sided\s+)?(?:CI|confidence|interval|bound|level|quantile)", re.I)


@dataclass(frozen=True)
class Figure:
    file: str
    line: int
    text: str
    value: float
    decimals: int
    unit: str | None
    cite: str | None


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks, with inline code, link
    targets, URLs and HTML comments blanked out."""
    out, fenced = [], False
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = re.sub(r"`[^`]*`", " ", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        line = re.sub(r"https?://\S+", " ", line)
        out.append((i, line))
    return out


def is_figure(m: re.Match, line: str) -> bool:
    num, unit = m.group("num"), m.group("unit")
    if unit and unit.strip() == "%" and CONFIDENCE_LEVEL.match(line, m.end("unit")):
        return False  # "95% CI": a confidence level, a parameter
    if VERSION_OF.search(line, 0, m.start()):
        return False
    if unit or m.group("spread"):
        return True
    digits = num.replace(",", "").replace(".", "").lstrip("0")
    return "." in num and len(digits) >= 3


def quoted_figures(path: Path) -> list[Figure]:
    """Every figure quoted in one Markdown file."""
    out = []
    for i, line in prose(path.read_text(encoding="utf-8")):
        if re.match(r"\s*\[\^[\w-]+\]:", line):
            continue  # a footnote's own text
        for m in NUMBER_RE.finditer(line):
            if not is_figure(m, line):
                continue
            num = m.group("num").replace(",", "")
            unit = (m.group("unit") or "").strip() or None
            out.append(
                Figure(
                    path.name,
                    i,
                    m.group().strip(),
                    float(num),
                    len(num.split(".")[1]) if "." in num else 0,
                    unit,
                    m.group("cite"),
                )
            )
    return out


def external_notes(path: Path) -> set[str]:
    """The footnote markers whose definition starts with 'External:'."""
    return {m.group(1) for m in re.finditer(r"^\[\^([\w-]+)\]:\s*External:", path.read_text(encoding="utf-8"), re.M)}


def committed_numbers() -> list[float]:
    """Every number in the committed benchmark results (JSON values and the numbers in the .md reports)."""
    out: list[float] = []
    for p in sorted((ROOT / "benchmarks").glob("*.json")):
        _collect_numbers(json.loads(p.read_text()), out)
    for p in sorted((ROOT / "benchmarks").glob("*.md")):
        _collect_numbers(p.read_text(encoding="utf-8"), out)
    return out


def _collect_numbers(v, out: list[float]) -> None:
    """Append every finite number in the JSON value `v` (numbers inside its strings too) to `out`."""
    if isinstance(v, bool):
        return
    if isinstance(v, (int, float)) and math.isfinite(v):
        out.append(float(v))
    elif isinstance(v, dict):
        for x in v.values():
            _collect_numbers(x, out)
    elif isinstance(v, list):
        for x in v:
            _collect_numbers(x, out)
    elif isinstance(v, str):
        out.extend(float(x.replace(",", "")) for x in re.findall(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", v))


@pytest.fixture(scope="module")
def pool():
    import numpy as np

    return np.unique(np.abs(np.array(committed_numbers())))


def unsupported(path: Path, pool) -> list[Figure]:
    notes = external_notes(path)
    out = []
    for fig in quoted_figures(path):
        if fig.cite and fig.cite[2:-1] in notes:
            continue
        if not _in_pool(fig, pool):
            out.append(fig)
    return out


def _in_pool(fig: Figure, pool) -> bool:
    import numpy as np

    half = 0.5 * 10.0**-fig.decimals + 1e-9
    unit = (fig.unit or "").lower()
    factors = (1, 1e-3, 1e-6, 1e-9, 1e-12) if unit.endswith("/s") else UNITS.get(unit, (1,))
    return any(bool(np.any(np.abs(pool * k - fig.value) <= half)) for k in factors)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_quoted_figure_is_committed_or_cited(path, pool):
    bad = unsupported(path, pool)
    assert not bad, f"{path.name}: figures in no committed benchmark result and not marked External: " + "; ".join(
        f"line {f.line}: {f.text!r}" for f in bad
    )


# ---------------------------------------------------------------------------------------------
# the rule itself, on text written for it


def test_extraction_takes_measurements_and_leaves_identifiers(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text(
        "Throughput 4,107 req/s, p99 21.2 ms, 11.3x faster, 12% less memory, accuracy 0.7049, 2011 [1862, 2701].\nNot "
        "figures: fp16, p99, sm_89, torch 2.13.0, Python 3.11, 3x224x224, 1e-4, 95% CI, 64 workers, 35,691 rows, "
        "`9.99 ms`.\n```\n12.5 ms in a code block\n```\nA page holds 65,504 bytes[^fp16].\n\n[^fp16]: External: a "
        "made-up source.\n"
    )
    got = [(f.text, f.unit) for f in quoted_figures(doc)]
    assert got == [
        ("4,107 req/s", "req/s"),
        ("21.2 ms", "ms"),
        ("11.3x", "x"),
        ("12%", "%"),
        ("0.7049", None),
        ("2011 [1862, 2701]", None),
        ("65,504 bytes[^fp16]", "bytes"),
    ]
    assert external_notes(doc) == {"fp16"}


def test_a_figure_must_round_from_a_committed_number():
    import numpy as np

    pool = np.array([0.1234, 21.24, 0.0152, 4106.6, 1.5e9])
    fig = lambda text, value, decimals, unit: Figure("d.md", 1, text, value, decimals, unit, None)  # noqa: E731
    assert _in_pool(fig("12.3%", 12.3, 1, "%"), pool)  # a share quoted as a percentage
    assert _in_pool(fig("21.2 ms", 21.2, 1, "ms"), pool)
    assert _in_pool(fig("15.2 ms", 15.2, 1, "ms"), pool)  # seconds quoted in ms
    assert _in_pool(fig("4,107 req/s", 4107, 0, "req/s"), pool)
    assert _in_pool(fig("1.40 GiB", 1.40, 2, "GiB"), pool)  # bytes quoted in GiB
    assert not _in_pool(fig("91.6 ms", 91.6, 1, "ms"), pool)  # the serve.md figure no result holds
    assert not _in_pool(fig("2,011 req/s", 2011, 0, "req/s"), pool)
