"""Is the per-layer ranking useful? On lm-tiny under fp8-tensorwise (emulated on CPU: real fp8
casts, fp32 GEMMs), keep the top-ranked FP8-eligible layer in high precision versus a randomly
chosen one, and measure how much of the validation-loss gap to the fp32 control each closes.

    PYTHONPATH=. python benchmarks/numerics_ranking.py --seeds 0 1 2

Protocol, per seed:
1. pretrain lm-tiny in fp32 from scratch (`train.seed` = the seed: its own initial weights and
   data order) for --pretrain-steps;
2. rank its layers with `trainwise numerics` (`analyze`, --probe-steps fp32 steps, the ranking the
   product reports: unsafe first, then loss impact);
3. fine-tune that checkpoint (`model.init_from`) for --steps at a constant --lr under: fp32 (the
   control), fp8-tensorwise, and fp8-tensorwise with each FP8-eligible layer in turn kept in high
   precision (`precision.keep_high_precision`). Every arm starts from the same weights and sees the
   same batches, so the arms differ only in numerics.

gap closed by layer L = (val_fp8 - val_keep_L) / (val_fp8 - val_fp32). "Random" is the exact
expectation of a uniformly random choice among the other eligible layers (their mean), not one
draw. The ranking by matmul error alone (the previous ranking) is reported alongside.

Why not from scratch: after a few dozen steps from random weights the fp8 and fp32 runs differ by
less than run-to-run chaos (an earlier version of this benchmark: the fp8 run ended below the fp32
one in 2 of 3 seeds), so no layer choice can be told apart; from a trained checkpoint the gap is
systematic. Seeds can run in separate processes and be merged with --combine A.json B.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.numerics.analysis import analyze
from trainwise.numerics.diagnose import training_batches
from trainwise.train.loop import train
from trainwise.train.precision import fp8_module_filter
from trainwise.workloads.build import build_workload

CONFIG = "configs/lm-tiny.toml"
OUT = "benchmarks/numerics_ranking_cpu-2core_20261122"


def run(overrides: list[str], run_dir: Path) -> float:
    cfg = load_config(CONFIG, overrides + ["log.progress=false", "log.mlflow=false", "train.checkpoint_every=0"])
    t0 = time.time()
    res = train(cfg, run_dir=run_dir)
    print(f"  {run_dir.name}: val {res.summary['final_val_loss']:.5f} ({time.time() - t0:.0f} s)", flush=True)
    return res.summary["final_val_loss"]


def rank_layers(pretrained: Path, seed: int, probe_steps: int, threads: int) -> dict:
    cfg = load_config(CONFIG, [f"model.init_from={pretrained}", f"train.seed={seed}", f"train.threads={threads}"])
    w = build_workload(cfg)
    report = analyze(
        w.model,
        training_batches(cfg, w, probe_steps),
        w.loss_fn,
        ["e4m3-tensorwise", "e5m2-tensorwise"],
        recipe="fp8-tensorwise",
        gpu="any",
    )
    eligible = fp8_module_filter()
    modules = dict(w.model.named_modules())
    ranked = [n for n in report["ranking"] if eligible(modules[n], n)]
    by_error = sorted(ranked, key=lambda n: report["layers"][n]["score"], reverse=True)
    return {
        "ranked": ranked,
        "ranked_by_matmul_error": by_error,
        "loss_impact": {n: report["layers"][n]["loss_impact"] for n in ranked},
        "matmul_error": {n: report["layers"][n]["score"] for n in ranked},
        "unsafe": {n: report["layers"][n]["unsafe_reasons"] for n in ranked if report["layers"][n]["unsafe_reasons"]},
    }


def one_seed(seed: int, args, tmp: Path) -> dict:
    pre = tmp / f"s{seed}-pretrain"
    run(
        [
            f"train.seed={seed}",
            f"train.steps={args.pretrain_steps}",
            f"train.threads={args.threads}",
            f"train.eval_every={args.pretrain_steps}",
        ],
        pre,
    )
    rank = rank_layers(pre, seed, args.probe_steps, args.threads)
    print(f"  ranking: {rank['ranked'][:4]} ...", flush=True)
    ft = [
        f"model.init_from={pre}",
        f"train.seed={seed}",
        f"train.steps={args.steps}",
        f"train.threads={args.threads}",
        f"train.lr={args.lr}",
        "train.warmup_steps=0",
        "train.min_lr_ratio=1.0",
        f"train.eval_every={args.steps}",
        f"train.eval_batches={args.eval_batches}",
    ]
    fp32 = run(ft + ["precision.policy=fp32"], tmp / f"s{seed}-fp32")
    fp8 = run(ft + ["precision.policy=fp8-tensorwise"], tmp / f"s{seed}-fp8")
    keep = {}
    for layer in rank["ranked"]:
        keep[layer] = run(
            ft + ["precision.policy=fp8-tensorwise", f'precision.keep_high_precision=["{layer}"]'],
            tmp / f"s{seed}-keep-{layer}",
        )
    gap = fp8 - fp32
    closed = {layer: (fp8 - v) / gap if gap else None for layer, v in keep.items()}
    top, top_err = rank["ranked"][0], rank["ranked_by_matmul_error"][0]
    others = [closed[n] for n in rank["ranked"][1:] if closed[n] is not None]
    order = sorted(closed, key=lambda n: closed[n] if closed[n] is not None else -1e9, reverse=True)
    return {
        "seed": seed,
        "val_fp32": fp32,
        "val_fp8": fp8,
        "gap": gap,
        "val_keep": keep,
        "gap_closed": closed,
        "top_layer": top,
        "gap_closed_top": closed[top],
        "gap_closed_random_expectation": statistics.mean(others) if others else None,
        "top_layer_by_matmul_error": top_err,
        "gap_closed_top_by_matmul_error": closed[top_err],
        "best_layer_in_hindsight": order[0],
        "rank_of_top_in_hindsight": order.index(top) + 1,
        "n_layers": len(order),
        **rank,
    }


def write_results(rows: list[dict], meta: dict) -> None:
    valid = [r for r in rows if r["gap"] > 0]
    mean = lambda key: statistics.mean(r[key] for r in valid) if valid else None  # noqa: E731
    summary = {
        **meta,
        "rows": rows,
        "mean_gap_closed_top": mean("gap_closed_top"),
        "mean_gap_closed_random": mean("gap_closed_random_expectation"),
        "mean_gap_closed_top_by_matmul_error": mean("gap_closed_top_by_matmul_error"),
        "seeds_with_positive_gap": [r["seed"] for r in valid],
    }
    Path(OUT + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        "# Keeping the top-ranked layer vs a random layer in high precision (lm-tiny, fp8-tensorwise emulated, CPU)",
        "",
        f"Command: `{meta['command']}` ({meta['wall_s']:.0f} s of run time, summed over processes), torch "
        f"{meta['torch']}.",
        f"Per seed: fp32 pretraining from scratch ({meta['pretrain_steps']} steps), the ranking of `trainwise "
        f"numerics` on that checkpoint ({meta['probe_steps']} probe steps), then {meta['steps']} fine-tuning steps at "
        f"lr {meta['lr']} from it in every arm (same weights, same batches); val loss over {meta['eval_batches']} "
        f"batches of 32 x 128 bytes. 'random' = mean over the other {rows[0]['n_layers'] - 1 if rows else '?'} "
        "eligible layers (the exact expectation of a random pick).",
        "",
        "| seed | val fp32 | val fp8 | gap | top-ranked layer | gap closed (top) | gap closed (random, expected) | "
        "top by matmul error only | its gap closed | best layer in hindsight | rank of top in hindsight |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['val_fp32']:.5f} | {r['val_fp8']:.5f} | {r['gap']:+.5f} | {r['top_layer']} | "
            f"{f(r['gap_closed_top'])} | {f(r['gap_closed_random_expectation'])} | {r['top_layer_by_matmul_error']} | "
            f"{f(r['gap_closed_top_by_matmul_error'])} | {r['best_layer_in_hindsight']} | "
            f"{r['rank_of_top_in_hindsight']} of {r['n_layers']} |"
        )
    lines += [
        "",
        f"Mean over the {len(valid)} seeds whose fp8 run lost to fp32 (gap > 0): gap closed by the top-ranked layer "
        f"**{f(summary['mean_gap_closed_top'])}**, by a random layer (expected) "
        f"**{f(summary['mean_gap_closed_random'])}**, by the top layer of the matmul-error-only ranking "
        f"{f(summary['mean_gap_closed_top_by_matmul_error'])}.",
        "",
    ]
    for r in rows:
        lines.append(
            f"Seed {r['seed']}, gap closed per layer (ranked order): "
            + ", ".join(f"{n} {f(r['gap_closed'][n])}" for n in r["ranked"])
        )
    Path(OUT + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows) - 3 :]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=20, help="fine-tuning steps per arm")
    ap.add_argument(
        "--lr", type=float, default=2e-4, help="constant fine-tuning learning rate (the pretraining's final one)"
    )
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--probe-steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--part", help="write this process's rows to PART.json (for --combine) instead of the committed result"
    )
    ap.add_argument("--combine", nargs="+", help="merge the rows of --part JSONs into the committed result")
    args = ap.parse_args()
    if args.combine:
        parts = [json.loads(Path(p).read_text()) for p in args.combine]
        rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: r["seed"])
        meta = {
            **parts[0]["meta"],
            "command": " ; ".join(p["meta"]["command"] for p in parts) + " ; merged with --combine",
            "wall_s": sum(p["meta"]["wall_s"] for p in parts),
        }
        write_results(rows, meta)
        return
    torch.set_num_threads(args.threads)
    t0 = time.time()
    command = "PYTHONPATH=. python benchmarks/numerics_ranking.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if v is not None and k != "combine"
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for seed in args.seeds:
            rows.append(one_seed(seed, args, Path(d)))
            meta = {
                "command": command,
                "config": CONFIG,
                "pretrain_steps": args.pretrain_steps,
                "steps": args.steps,
                "lr": args.lr,
                "eval_batches": args.eval_batches,
                "probe_steps": args.probe_steps,
                "threads": args.threads,
                "wall_s": time.time() - t0,
                "torch": torch.__version__,
            }
            if args.part:  # after every seed, so a run cut short keeps its finished seeds
                Path(args.part).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
            else:
                write_results(rows, meta)


if __name__ == "__main__":
    main()
