"""Is the per-layer error ranking useful? On lm-tiny under fp8-tensorwise (emulated on CPU: real
fp8 casts, fp32 GEMMs), keep the top-ranked FP8-eligible layer in bf16 versus a randomly chosen
one, and measure how much of the validation-loss gap to the fp32 control each closes.

    PYTHONPATH=. python benchmarks/numerics_ranking.py --seeds 0 1 2 --steps 100 --threads 2

Same seed = same initial weights and data order in every arm, so the arms differ only in numerics.
gap_closed = (val_fp8 - val_keep) / (val_fp8 - val_fp32), and because after few steps fp8 can land
on either side of fp32, also the distance form: (|fp8 - fp32| - |keep - fp32|) / |fp8 - fp32|.

Seeds can run in separate processes and be merged:
    python benchmarks/numerics_ranking.py --combine A.json B.json --out benchmarks/numerics_ranking_cpu-2core_20261122
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.numerics.analysis import analyze
from trainwise.numerics.commands import training_batches
from trainwise.train.loop import train
from trainwise.train.precision import fp8_module_filter
from trainwise.train.rundir_setup import build_workload

CONFIG = "configs/lm-tiny.toml"


def run(overrides: list[str], tmp: Path, tag: str) -> float:
    cfg = load_config(CONFIG, overrides + ["log.progress=false"])
    t0 = time.time()
    res = train(cfg, run_dir=tmp / tag)
    print(f"  {tag}: val {res.summary['final_val_loss']:.4f} ({time.time() - t0:.0f} s)", flush=True)
    return res.summary["final_val_loss"]


def ranking(seed: int, steps: int, base: list[str]) -> list[str]:
    """FP8-eligible Linear layers, worst fp8-tensorwise matmul error first (2 fp32 probe steps)."""
    cfg = load_config(CONFIG, base + [f"train.seed={seed}"])
    torch.manual_seed(seed)
    w = build_workload(cfg)
    report = analyze(w.model, training_batches(cfg, w, steps), w.loss_fn, ["e4m3-tensorwise", "e5m2-tensorwise"], recipe="fp8-tensorwise", gpu="any")
    eligible = fp8_module_filter()
    modules = dict(w.model.named_modules())
    return [n for n in report["ranking"] if eligible(modules[n], n)], report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe-steps", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/numerics_ranking_cpu-2core_20261122")
    ap.add_argument("--combine", nargs="+", help="merge the rows of earlier result JSONs instead of running")
    args = ap.parse_args()
    if args.combine:
        parts = [json.loads(Path(p).read_text()) for p in args.combine]
        rows = sorted((r for part in parts for r in part["rows"]), key=lambda r: r["seed"])
        args.seeds, args.steps, args.threads, args.probe_steps = [r["seed"] for r in rows], parts[0]["steps"], args.threads, args.probe_steps
        args.command_note = " ; ".join(p["command"] for p in parts) + " ; merged with --combine"
        write_results(args, rows, time.time() - sum(p["wall_s"] for p in parts))
        return
    torch.set_num_threads(args.threads)
    base = [f"train.steps={args.steps}", f"train.threads={args.threads}", f"train.eval_every={args.steps}", "train.checkpoint_every=0"]
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for seed in args.seeds:
            ranked, _ = ranking(seed, args.probe_steps, base)
            top = ranked[0]
            rand = random.Random(1000 + seed).choice(ranked[1:])
            s = base + [f"train.seed={seed}"]
            fp32 = run(s + ["precision.policy=fp32"], tmp, f"s{seed}-fp32")
            fp8 = run(s + ["precision.policy=fp8-tensorwise"], tmp, f"s{seed}-fp8")
            keep_top = run(s + ["precision.policy=fp8-tensorwise", f'precision.keep_high_precision=["{top}"]'], tmp, f"s{seed}-top")
            keep_rand = run(s + ["precision.policy=fp8-tensorwise", f'precision.keep_high_precision=["{rand}"]'], tmp, f"s{seed}-rand")
            gap = fp8 - fp32
            row = {"seed": seed, "top_layer": top, "random_layer": rand, "val_fp32": fp32, "val_fp8": fp8, "val_keep_top": keep_top,
                   "val_keep_random": keep_rand, "gap": gap,
                   "gap_closed_top": (fp8 - keep_top) / gap if gap else None, "gap_closed_random": (fp8 - keep_rand) / gap if gap else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_results(args, rows, t0)



def write_results(args, rows: list[dict], t0: float) -> None:
    """Written after every seed, so a run cut short still leaves its finished seeds."""
    for r in rows:
        dist = abs(r["val_fp8"] - r["val_fp32"])
        for arm in ("top", "random"):
            r[f"dist_closed_{arm}"] = (dist - abs(r[f"val_keep_{arm}"] - r["val_fp32"])) / dist if dist else None
    top = [r["dist_closed_top"] for r in rows if r["dist_closed_top"] is not None]
    rnd = [r["dist_closed_random"] for r in rows if r["dist_closed_random"] is not None]
    summary = {"command": getattr(args, "command_note", None) or f"PYTHONPATH=. python benchmarks/numerics_ranking.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} --probe-steps {args.probe_steps} --threads {args.threads}",
               "config": CONFIG, "steps": args.steps, "seeds": [r["seed"] for r in rows], "rows": rows,
               "metric": "distance to fp32 closed: (|fp8-fp32| - |keep-fp32|) / |fp8-fp32|", "mean_gap_closed_top": statistics.mean(top) if top else None, "mean_gap_closed_random": statistics.mean(rnd) if rnd else None,
               "median_gap_closed_top": statistics.median(top) if top else None, "median_gap_closed_random": statistics.median(rnd) if rnd else None,
               "wall_s": time.time() - t0, "torch": torch.__version__}
    Path(args.out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# Keeping the top-ranked layer vs a random layer in bf16 (lm-tiny, fp8-tensorwise emulated, CPU)", "",
             f"Command: `{summary['command']}` ({summary['wall_s']:.0f} s of run time, summed over processes). Val loss after {args.steps} steps, same seed = same init and data order.", "",
             "| seed | top layer | random layer | val fp32 | val fp8 | keep top | keep random | gap closed (top) | gap closed (random) | dist. closed (top) | dist. closed (random) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {r['seed']} | {r['top_layer']} | {r['random_layer']} | {r['val_fp32']:.4f} | {r['val_fp8']:.4f} | {r['val_keep_top']:.4f} | {r['val_keep_random']:.4f} | {f(r['gap_closed_top'])} | {f(r['gap_closed_random'])} | {f(r['dist_closed_top'])} | {f(r['dist_closed_random'])} |")
    g = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines += ["", f"Mean distance-to-fp32 closed over {len(rows)} seeds: top-ranked {g(summary['mean_gap_closed_top'])}, random {g(summary['mean_gap_closed_random'])} "
              f"(medians {g(summary['median_gap_closed_top'])}, {g(summary['median_gap_closed_random'])})."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
