"""The seams between stages, timed as the test suite runs them: the artifact matrix and the
serve -> monitor -> retrain -> hot-swap end-to-end test.

- The artifact matrix (tests/train/test_artifact_matrix.py): {ac none, full, selective, every-n} x
  {fp32, bf16-mixed, fp8-tensorwise} x {single, ddp, fsdp2 on 2 gloo ranks}, on the tabular MLP
  (36 cells) and on a user GRU model wherever AC is on (27 cells); each saved model loaded in a
  fresh process and its predictions compared with the in-process model's.
- The end-to-end test (tests/monitor/test_serve_monitor_e2e.py): a real `trainwise serve` process on
  a registered model, real HTTP traffic with a shift planted half-way, `trainwise watch --act`; its
  timeline (shift sent, trigger fired, version promoted, swap seen) in seconds after the first request.

    python benchmarks/seams.py      # writes benchmarks/seams_cpu-2core_<yyyymmdd>.{md,json}

Run it on a quiet machine: the load average is recorded before and after.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def pytest(target: str, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall_s = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{target} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return wall_s, done.stdout


def main() -> int:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        timeline_path = Path(tmp) / "timeline.json"
        env = {**os.environ, "TRAINWISE_E2E_TIMELINE_JSON": str(timeline_path)}
        matrix_s, _ = pytest("tests/train/test_artifact_matrix.py", env)
        e2e_s, _ = pytest("tests/monitor/test_serve_monitor_e2e.py", env)
        timeline = json.loads(timeline_path.read_text())
    load_after = os.getloadavg()[0]
    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_1min_before": load_before,
        "load_average_1min_after": load_after,
        "artifact_matrix": {"cells_tabular": 36, "cells_user_gru": 27, "pytest_wall_s": round(matrix_s, 1)},
        "serve_monitor_e2e": {"pytest_wall_s": round(e2e_s, 1), **timeline},
    }
    stem = ROOT / "benchmarks" / f"seams_cpu-2core_{time.strftime('%Y%m%d')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {event} | {s:.2f} |" for event, s in timeline["seconds_after_first_request"].items())
    stem.with_suffix(".md").write_text(f"""# Seams between stages, {result["date"]}

Command: `python benchmarks/seams.py` on {result["cpu"]} ({result["cores"]} cores); load average (1 min)
{load_before:.2f} before, {load_after:.2f} after.

## Artifact matrix (tests/train/test_artifact_matrix.py)

36 tabular cells ({{ac none, full, selective, every-n}} x {{fp32, bf16-mixed, fp8-tensorwise}} x
{{single, ddp, fsdp2}}) and 27 user-GRU cells (AC on), every saved model loaded in a fresh process:
all pass; the file's tests took {matrix_s:.1f} s (pytest wall time, interpreter start-up included).

## Serve -> monitor -> retrain -> hot swap (tests/monitor/test_serve_monitor_e2e.py)

Test wall time {e2e_s:.1f} s. Decision: {timeline["decision"]} (gate verdict {timeline.get("gate_verdict")}), triggers
{", ".join(timeline["triggers"])}. Seconds after the first request:

| event | s |
|---|---|
{rows}
""")
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
