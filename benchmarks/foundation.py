"""Issue 2's figures on this machine, measured in one run:

1. speed: lm-tiny, fp32 vs bf16-mixed, trainwise's loop vs a minimal hand-written PyTorch loop on
   the same model, data and precision. Runs are interleaved (A B C D, A B C D, ...) so that load
   from other processes hits all of them alike; each figure is the median over repeats of each
   run's median step time, with min/max.
2. quality: the full lm-tiny recipe (200 steps) in fp32, bf16-mixed and fp8-tensorwise, same seed
   and data order; final validation loss relative to fp32.

    python benchmarks/foundation.py [--repeats 3] [--speed-steps 30] [--out benchmarks/foundation_cpu-2core_YYYYMMDD]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainwise.config import load_config
from trainwise.train.loop import train
from trainwise.train.precision import POLICIES, autocast_context
from trainwise.workloads.base import get_workload_fn

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "lm-tiny.toml"
QUIET = ["log.progress=false", "train.eval_every=0", "train.eval_batches=1", "train.checkpoint_every=0"]


def minimal_loop(cfg, steps: int) -> list[float]:
    """The same model, data and precision in the plainest PyTorch loop; returns step times in ms."""
    torch.manual_seed(cfg.train.seed)
    w = get_workload_fn(cfg.workload.name)(cfg)
    model = w.model
    policy = POLICIES[cfg.precision.policy]
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.train.lr,
        betas=(cfg.train.beta1, cfg.train.beta2),
        weight_decay=cfg.train.weight_decay,
        foreach=True,
    )
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(w.train), (cfg.train.micro_batch_size,), generator=g)
        x, y = w.train.inputs[idx], w.train.targets[idx]
        with autocast_context(policy, torch.device("cpu")):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def speed(repeats: int, steps: int) -> dict:
    runs: dict[str, list[float]] = {}
    for r in range(repeats):
        for policy in ("fp32", "bf16-mixed"):
            cfg = load_config(RECIPE, QUIET + [f"train.steps={steps}", f"precision.policy={policy}"])
            with tempfile.TemporaryDirectory() as d:
                s = train(cfg, Path(d) / "run").summary
            runs.setdefault(f"trainwise {policy}", []).append(s["median_step_ms"])
            runs.setdefault(f"minimal {policy}", []).append(statistics.median(minimal_loop(cfg, steps)))
            print(
                f"repeat {r}: {policy}: trainwise {runs[f'trainwise {policy}'][-1]:.1f} ms, minimal "
                f"{runs[f'minimal {policy}'][-1]:.1f} ms",
                flush=True,
            )
    out = {k: spread(v) for k, v in runs.items()}
    out["bf16_over_fp32"] = out["trainwise bf16-mixed"]["median"] / out["trainwise fp32"]["median"]
    out["paired_bf16_over_fp32"] = spread(
        [b / a for a, b in zip(runs["trainwise fp32"], runs["trainwise bf16-mixed"], strict=True)]
    )
    for policy in ("fp32", "bf16-mixed"):
        out[f"overhead_{policy}"] = spread(
            [t / m - 1 for t, m in zip(runs[f"trainwise {policy}"], runs[f"minimal {policy}"], strict=True)]
        )
    return out


def quality(policies: list[str]) -> dict:
    out = {}
    for policy in policies:
        cfg = load_config(RECIPE, ["log.progress=false", f"precision.policy={policy}"])
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            result = train(cfg, Path(d) / "run")
            losses = [json.loads(x)["loss"] for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        s = result.summary
        out[policy] = {
            "final_val_loss": s["final_val_loss"],
            "final_train_loss": s["final_train_loss"],
            "first_logged_loss": losses[0],
            "median_step_ms": s["median_step_ms"],
            "skipped_steps": s["skipped_steps"],
            "wall_s": time.perf_counter() - t0,
        }
        print(f"quality {policy}: val {s['final_val_loss']:.4f} in {out[policy]['wall_s']:.0f} s", flush=True)
    base = out["fp32"]["final_val_loss"]
    for policy in policies:
        out[policy]["val_loss_vs_fp32"] = out[policy]["final_val_loss"] / base - 1
    return out


def write_report(result: dict, out: Path) -> None:
    s, q = result["speed"], result["quality"]
    lines = [
        f"# Foundation figures: lm-tiny on {result['machine']['cpu']} ({result['machine']['threads']} torch threads), "
        f"{result['date']}",
        "",
        f"Command: `{result['command']}`. Other processes shared the 2 cores during the run, so runs were interleaved",
        "and each figure is the median over repeats of per-run median step times (min-max in brackets).",
        "",
        "## Speed (median step ms)",
        "",
        "| loop | fp32 | bf16-mixed |",
        "|---|---|---|",
    ]
    for loop in ("trainwise", "minimal"):
        cells = [
            f"{s[f'{loop} {p}']['median']:.1f} ({s[f'{loop} {p}']['min']:.1f}-{s[f'{loop} {p}']['max']:.1f})"
            for p in ("fp32", "bf16-mixed")
        ]
        lines.append(f"| {loop} | {cells[0]} | {cells[1]} |")
    p = s["paired_bf16_over_fp32"]
    lines += [
        "",
        f"- bf16-mixed / fp32 step time: **{s['bf16_over_fp32']:.3f}** (paired per repeat: median {p['median']:.3f}, "
        f"{p['min']:.3f}-{p['max']:.3f}); target <= 0.60",
    ]
    for policy in ("fp32", "bf16-mixed"):
        o = s[f"overhead_{policy}"]
        lines.append(
            f"- trainwise overhead vs minimal loop, {policy}: **{o['median']:+.1%}** (per repeat {o['min']:+.1%} to "
            f"{o['max']:+.1%}); target within 3%"
        )
    lines += [
        "",
        "## Quality (full recipe, 200 steps, same seed and data order)",
        "",
        "| policy | first logged train loss | final val loss | vs fp32 | skipped steps | median step ms |",
        "|---|---|---|---|---|---|",
    ]
    for policy, v in q.items():
        lines.append(
            f"| {policy} | {v['first_logged_loss']:.4f} | {v['final_val_loss']:.4f} | {v['val_loss_vs_fp32']:+.2%} | "
            f"{v['skipped_steps']} | {v['median_step_ms']:.1f} |"
        )
    lines += [
        "",
        "Targets: bf16-mixed within 2% of fp32's validation loss; fp8-tensorwise trains (loss falls) and ends within "
        "5%.",
        "fp8 runs emulated on CPU (real fp8 casts and scales, fp32 GEMM of the dequantised values): its speed here "
        "means nothing.",
    ]
    (out.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", help="re-render the .md from a saved .json result")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--speed-steps", type=int, default=30)
    ap.add_argument("--quality", default="fp32,bf16-mixed,fp8-tensorwise")
    ap.add_argument("--out", default=f"benchmarks/foundation_cpu-2core_{time.strftime('%Y%m%d')}")
    args = ap.parse_args()
    if args.render:
        write_report(json.loads(Path(args.render).read_text()), Path(args.render).with_suffix(""))
        return
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python benchmarks/foundation.py --repeats {args.repeats} --speed-steps {args.speed_steps}",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "speed": speed(args.repeats, args.speed_steps),
        "quality": quality(args.quality.split(",")),
    }
    from trainwise.env import _cpu_model

    result["machine"]["cpu"] = _cpu_model()
    write_report(result, Path(args.out))
    print((Path(args.out).with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()
