"""Run the variants of a bench, each in its own process, interleaved over repeats.

OUT/
  bench.json                 what bench this folder holds (base config hash), the variants
  variants/<label>-<hash>/   variant.json, config.toml, repeat-R/ (a run directory), repeat-R.json,
                             repeat-R.log (the worker's stdout and stderr), predictions.parquet
  results.json  recommendation.json  report.md  report.html

A repeat whose repeat-R.json says it completed, for the same config hash, is never run again, so
an interrupted bench picks up where it stopped and nothing finished is lost.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from trainwise.bench.grid import Variant, expand, identity
from trainwise.config import build_config, config_to_toml, read_toml
from trainwise.errors import ConfigError
from trainwise.rundir import read_json, write_json

FINISHED = ("completed", "early_stopped")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def load_base(config_path: str | Path) -> dict:
    return read_toml(config_path, "config file", "a TOML recipe such as configs/lm-tiny.toml")


def plan(config_path, grid: list[str], variants: list[str], overrides: list[str]) -> tuple[object, list[Variant]]:
    """The base config and every validated variant (plus the baseline row when bench.baseline)."""
    data = load_base(config_path)
    base = build_config(data, overrides, str(config_path), unused="keep")  # the bench's own rule: grid.expand
    out = expand(grid, variants, data, overrides, str(config_path))
    if base.bench.baseline:
        control = next(v for v in out if v.is_control)
        h = hashlib.sha256(f"baseline:{control.hash}".encode()).hexdigest()[:16]
        out.append(Variant({}, "plain PyTorch (fp32)", control.cfg, h, kind="baseline"))
    return base, out


def claim_out_dir(out: Path, base, variants: list[Variant]) -> None:
    """Refuse a folder holding another bench's results (or anything else); record this bench."""
    ident = identity(base)
    marker = out / "bench.json"
    if marker.is_file():
        old = read_json(marker)
        if {k: old.get(k) for k in ident} != ident:
            raise ConfigError(f"--out {out} holds the results of another bench (base config hash {old.get('base_config_hash')}, "
                              f"this one {ident['base_config_hash']}); choose another --out, or delete that folder to replace it")
        known = {v["config_hash"]: v for v in old.get("variants", [])}
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty and holds no bench.json: it is not a bench folder; choose another --out")
    else:
        known = {}
    known.update({v.hash: v.to_dict() for v in variants})
    write_json(marker, {**ident, "variants": list(known.values())})


def prepare_variant_dir(out: Path, v: Variant) -> Path:
    d = out / "variants" / v.dir_name
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "variant.json", v.to_dict())
    (d / "config.toml").write_text(config_to_toml(v.cfg))
    return d


def finished_repeat(d: Path, repeat: int, v: Variant) -> dict | None:
    p = d / f"repeat-{repeat}.json"
    if not p.is_file():
        return None
    try:
        r = read_json(p)
    except Exception:
        return None
    return r if r.get("status") in FINISHED and r.get("config_hash") == v.hash else None


def run_worker(d: Path, repeat: int, v: Variant, quality: bool) -> dict:
    """One repeat of one variant in a fresh Python process; a crash becomes a result too."""
    import shutil

    shutil.rmtree(d / f"repeat-{repeat}", ignore_errors=True)  # an unfinished attempt: nothing finished is lost
    (d / f"repeat-{repeat}.json").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "trainwise.bench.worker", str(d), "--repeat", str(repeat)] + (["--quality"] if quality else [])
    log = d / f"repeat-{repeat}.log"
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
    result_path = d / f"repeat-{repeat}.json"
    if result_path.is_file():
        return read_json(result_path)
    tail = " | ".join(line for line in log.read_text(errors="replace").splitlines()[-3:] if line.strip())
    if proc.returncode < 0:
        reason = f"the worker process was killed by signal {-proc.returncode}" + (" (SIGKILL: often the out-of-memory killer)" if proc.returncode == -9 else "")
        status = "crashed"
    else:
        reason, status = f"the worker process exited with code {proc.returncode}", "crashed"
    result = {"status": status, "reason": reason + (f"; last output: {tail[-300:]}" if tail else ""), "config_hash": v.hash, "returncode": proc.returncode}
    write_json(result_path, result)
    return result


def run_variants(out: Path, variants: list[Variant], repeats: int, log=print) -> dict[str, list[dict]]:
    """Every repeat of every variant, interleaved (A B C A B C): slow drifts of a shared machine
    spread over all variants instead of biasing one. Returns {config hash: [repeat results]}."""
    dirs = {v.hash: prepare_variant_dir(out, v) for v in variants}
    results: dict[str, list[dict]] = {v.hash: [] for v in variants}
    total, n = repeats * len(variants), 0
    for repeat in range(repeats):
        for v in variants:
            n += 1
            if repeat and results[v.hash] and results[v.hash][0].get("status") not in FINISHED:
                continue  # it failed once: its failure is the result
            d = dirs[v.hash]
            done = finished_repeat(d, repeat, v)
            t0 = time.perf_counter()
            r = done or run_worker(d, repeat, v, quality=repeat == 0 and v.kind == "trainwise")
            results[v.hash].append(r)
            log(f"[{n}/{total}] {v.label} (repeat {repeat + 1}/{repeats}): {describe(r)}" + (" (finished earlier, skipped)" if done else f" in {time.perf_counter() - t0:.0f} s"))
    return results


def describe(r: dict) -> str:
    if r.get("status") not in FINISHED:
        return f"{r.get('status')}: {r.get('reason')}"
    ms, val = r.get("median_step_ms"), r.get("final_val_loss")
    return f"{ms:.1f} ms/step, val loss {val:.4f}" if ms is not None and val is not None else r.get("status")
