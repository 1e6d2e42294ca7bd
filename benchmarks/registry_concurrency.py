"""Two processes promote different versions to the same alias at the same time, N rounds each.

Checks, on the embedded sqlite store: no audit entry is lost (every move a worker reports is in
the trail, with the seq it was given), none is interleaved (each move starts from the holder the
previous move left, and the hash chain is intact), and the final alias equals the last recorded
move. Run with the move lock on (the product) and off (what the lock prevents).

    python benchmarks/registry_concurrency.py --rounds 50 --out benchmarks/registry_concurrency_cpu-2core_20261122
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NAME, ALIAS = "concurrent", "champion"
# the versions promoted: the built-in tabular workload, a tiny MLP, 2 steps (seconds to train)
TINY_RUN = [
    "workload.name=tabular",
    "model.n_layers=1",
    "model.d_model=16",
    "train.steps=2",
    "train.threads=1",
    "log.mlflow=false",
    "log.progress=false",
]


def worker(uri: str, version: str, rounds: int, barrier: Path, n_workers: int, lock: bool) -> None:
    """Promote `version` `rounds` times once all workers are ready; one JSON line per attempt."""
    from trainwise.registry import promote, store
    from trainwise.registry.store import get_client

    store._LOCKING = lock
    get_client(uri)  # import and connect before the start line, so both start together
    (barrier / f"ready-{version}").touch()
    while len(list(barrier.glob("ready-*"))) < n_workers:
        time.sleep(0.005)
    for i in range(rounds):
        t0 = time.perf_counter()
        try:
            r = promote(NAME, version, ALIAS, reason=f"worker v{version} round {i}", force=True, tracking_uri=uri)
            rec = {"action": r.action, "seq": r.seq, "from": r.from_version, "to": r.to_version}
        except Exception as e:  # without the lock sqlite may refuse a write: count it, keep going
            rec = {"action": "error", "error": f"{type(e).__name__}: {str(e)[:200]}"}
        rec["ms"] = (time.perf_counter() - t0) * 1e3
        print(json.dumps(rec), flush=True)


def make_versions(uri: str, root: Path, run_dirs: list[Path] | None = None, n: int = 2) -> list[str]:
    """Register one version per run directory: `run_dirs`, else `n` tiny runs trained here (the
    promotions are forced: the gate is not what is measured)."""
    from trainwise.config import load_config
    from trainwise.registry import register_run
    from trainwise.train.loop import train

    if run_dirs is None:
        run_dirs = [
            train(load_config(None, TINY_RUN + [f"train.seed={i}"]), root / f"run{i}").run_dir for i in range(n)
        ]
    return [str(register_run(run_dir, NAME, uri).version) for run_dir in run_dirs]


def run_trial(rounds: int, lock: bool, workdir: Path, run_dirs: list[Path] | None = None) -> dict:
    """One trial on a fresh store: returns the checks and the per-promotion latencies."""
    from trainwise.registry import audit
    from trainwise.registry.store import get_client

    uri = f"sqlite:///{workdir}/mlflow.db"
    versions = make_versions(uri, workdir, run_dirs)
    barrier = workdir / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                "--uri",
                uri,
                "--version",
                v,
                "--rounds",
                str(rounds),
                "--barrier",
                str(barrier),
                "--n-workers",
                str(len(versions)),
            ]
            + ([] if lock else ["--no-lock"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for v in versions
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode:
            raise RuntimeError(f"worker failed: {err[-2000:]}")
        results += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    client = get_client(uri)
    entries = audit.read_entries(client, NAME)
    moves = audit.moves(entries, ALIAS)
    reported = sorted(r["seq"] for r in results if r["action"] in audit.MOVES)
    final = str(client.get_registered_model(NAME).aliases.get(ALIAS))
    problems = audit.check_chain(entries)
    return {
        "lock": lock,
        "rounds_per_worker": rounds,
        "attempts": len(results),
        "moves_reported": len(reported),
        "moves_recorded": len(moves),
        "noops": sum(r["action"] == "noop" for r in results),
        "errors": sum(r["action"] == "error" for r in results),
        "lost_entries": len(set(reported) - {e["seq"] for e in moves}),
        "duplicate_seqs": len(reported) - len(set(reported)),
        "chain_problems": len(problems),
        "first_problems": problems[:3],
        "final_alias": final,
        "last_recorded_to": moves[-1]["to_version"] if moves else None,
        "final_alias_equals_last_move": bool(moves) and final == moves[-1]["to_version"],
        "promote_ms": [r["ms"] for r in results if r["action"] != "error"],
    }


def passed(t: dict) -> bool:
    return (
        t["lost_entries"] == 0
        and t["duplicate_seqs"] == 0
        and t["chain_problems"] == 0
        and t["errors"] == 0
        and t["moves_reported"] == t["moves_recorded"]
        and t["final_alias_equals_last_move"]
    )


def summarise(t: dict) -> dict:
    ms = sorted(t.pop("promote_ms"))
    t["promote_ms"] = {"median": statistics.median(ms), "min": ms[0], "max": ms[-1], "n": len(ms)} if ms else None
    t["passed"] = passed(t)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    ap.add_argument("--skip-unlocked", action="store_true", help="only the locked (product) trial")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    ap.add_argument("--version", help=argparse.SUPPRESS)
    ap.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n-workers", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-lock", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.uri, a.version, a.rounds, a.barrier, a.n_workers, not a.no_lock)
    trials = []
    for lock in [True] if a.skip_unlocked else [True, False]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            t = summarise(run_trial(a.rounds, lock, Path(tmp)))
            t["wall_s"] = time.time() - t0
            trials.append(t)
            print(json.dumps(t))
    report = {
        "what": "registry alias moves by 2 concurrent processes",
        "machine": os.uname().nodename,
        "trials": trials,
    }
    if a.out:
        Path(a.out + ".json").write_text(json.dumps(report, indent=2) + "\n")
        Path(a.out + ".md").write_text(to_markdown(report))


def to_markdown(report: dict) -> str:
    rows = [
        "| move lock | attempts | moves reported | moves recorded | no-ops | errors | lost | dup seq | chain "
        "problems | final alias = last move | promote ms median (min-max) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in report["trials"]:
        ms = t["promote_ms"]
        ms_txt = f"{ms['median']:.0f} ({ms['min']:.0f}-{ms['max']:.0f})" if ms else "-"
        rows.append(
            f"| {'on' if t['lock'] else 'off'} | {t['attempts']} | {t['moves_reported']} | {t['moves_recorded']} | "
            f"{t['noops']} | {t['errors']} | {t['lost_entries']} | {t['duplicate_seqs']} | {t['chain_problems']} | "
            f"{t['final_alias_equals_last_move']} | {ms_txt} | {'PASS' if t['passed'] else 'FAIL'} |"
        )
    return "\n".join(
        [
            f"# {report['what']}",
            "",
            "Command: `python benchmarks/registry_concurrency.py --rounds "
            f"{report['trials'][0]['rounds_per_worker']} --out benchmarks/registry_concurrency_cpu-2core_20261122`",
            "",
            "Two worker processes start together (a file barrier after both have imported and connected); each "
            f"promotes its own version to `champion` {report['trials'][0]['rounds_per_worker']} times (`--force`, so "
            "the gate is not what is timed), on a fresh `sqlite:///` store.",
            "No-ops are attempts whose version already held the alias (nothing to record).",
            "",
            *rows,
            "",
            *[
                f"- lock {'on' if t['lock'] else 'off'}, first problems: {'; '.join(t['first_problems'])}"
                for t in report["trials"]
                if t["first_problems"]
            ],
            "",
        ]
    )


if __name__ == "__main__":
    main()
