"""Does `trainwise demo` finish within its budget, and do two consecutive demos give the same answer?

Runs `trainwise demo --budget-min M` twice on this machine, each into a fresh folder (what `make
demo` runs), and reports per run: the wall time against the budget, the planned steps, every
variant's status and quality verdict (pruned ones with their measured slowdown), the noise floor
and the recommendation. Targets: each run within M minutes; the same recommendation both times.

    python benchmarks/demo_twice.py [BUDGET_MIN]   # writes benchmarks/demo_<cpu>_<date>.{md,json}
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_demo(out: Path, budget_min: float) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "trainwise.cli", "demo", "--budget-min", str(budget_min), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall_s = time.monotonic() - t0
    if not (out / "recommendation.json").is_file():
        raise SystemExit(f"the demo wrote no recommendation (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    rec = json.loads((out / "recommendation.json").read_text())
    rows = json.loads((out / "results.json").read_text())
    timing = rec["meta"].get("timing") or {}
    return {
        "wall_s": wall_s,
        "returncode": proc.returncode,
        "recommended": rec["label"],
        "speedup_vs_fp32": rec.get("speedup_vs_fp32"),
        "speed_source": rec.get("speed_source"),
        "speed_unreliable": rec.get("speed_unreliable"),
        "timing_rounds": timing.get("rounds"),
        "timing_verdict": timing.get("unreliable_reason") or ("reliable" if timing else rec["meta"].get("timing_note")),
        "load_per_core": timing.get("load_per_core"),
        "phases_s": rec["meta"].get("phases_s"),
        "overhead_vs_plain_pytorch": rec.get("trainwise_overhead_vs_plain_pytorch"),
        "overhead_ci95": rec.get("trainwise_overhead_ci95"),
        "overhead_note": rec.get("trainwise_overhead_note"),
        "steps": rec["meta"]["steps"],
        "noise_floor": rec["meta"]["noise_floor"],
        "device": rec["meta"]["device"],
        "variants": [
            {
                "label": r["label"],
                "status": r["status"],
                "median_step_ms": r.get("median_step_ms"),
                "quality": r["quality_verdict"],
                "reason": r.get("reason"),
            }
            for r in rows
        ],
        "stdout": proc.stdout,
    }


def step_ms(ms: float | None) -> str:
    return f"{ms:.1f}" if ms else "-"


def cpu_tag(device: str) -> str:
    m = re.match(r"(.*?), (\d+) cores", device)
    return f"{re.sub(r'[^a-z0-9]+', '-', m.group(1).lower()).strip('-')}-{m.group(2)}core" if m else "cpu"


def main(budget_min: float = 6.0) -> None:
    load_before = os.getloadavg()[0] / os.cpu_count()
    with tempfile.TemporaryDirectory() as d:
        runs = [one_demo(Path(d) / f"demo-{i}", budget_min) for i in range(2)]
    same = runs[0]["recommended"] == runs[1]["recommended"]
    result = {
        "budget_min": budget_min,
        "runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
        "same_recommendation": same,
        "load_per_core_before": round(load_before, 2),
        "load_per_core_after": round(os.getloadavg()[0] / os.cpu_count(), 2),
        "targets": "each run within the budget; the same recommendation",
        "date": time.strftime("%Y-%m-%d"),
    }
    stem = ROOT / "benchmarks" / f"demo_{cpu_tag(runs[0]['device'])}_{time.strftime('%Y%m%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# `trainwise demo --budget-min {budget_min:g}` twice on {runs[0]['device']}",
        "",
        f"`python benchmarks/demo_twice.py {budget_min:g}`, {result['date']}. "
        f"Same recommendation both times: **{'yes' if same else 'NO'}**. "
        f"1-minute load average per core: {result['load_per_core_before']} before, "
        f"{result['load_per_core_after']} after.",
        "",
    ]
    for i, r in enumerate(runs, 1):
        speed = (
            f"{r['speedup_vs_fp32']:.2f}x the fp32 control"
            if r["speedup_vs_fp32"] is not None
            else f"speed not quoted: {r['speed_unreliable']}"
        )
        phases = ", ".join(f"{k} {v:.0f} s" for k, v in (r["phases_s"] or {}).items())
        ov = r["overhead_vs_plain_pytorch"]
        overhead = (
            f"{ov:+.1%}"
            + (f" (95% CI {r['overhead_ci95'][0]:+.1%} to {r['overhead_ci95'][1]:+.1%})" if r["overhead_ci95"] else "")
            if ov is not None
            else f"not quoted: {r['overhead_note']}"
        )
        lines += [
            f"## Run {i}: {r['wall_s']:.0f} s (budget {budget_min * 60:.0f} s), {r['steps']} steps a variant",
            "",
            f"phases: {phases}; timing phase: {r['timing_rounds']} rounds, {r['timing_verdict']}, "
            + (
                f"load {r['load_per_core']:.2f} per core (median over the rounds)"
                if r["load_per_core"] is not None
                else "load not recorded"
            )
            + "",
            "",
            f"trainwise's step time vs a plain PyTorch loop: {overhead}",
            "",
            f"recommended: **{r['recommended']}** ({speed})" if r["recommended"] else "no recommendation",
            "",
            "| variant | status | median step ms | quality | reason |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {v['label']} | {v['status']} | {step_ms(v['median_step_ms'])} | {v['quality']} | "
            f"{(v['reason'] or '').replace('|', '/')} |"
            for v in r["variants"]
        ]
        lines += [""]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 6.0)
