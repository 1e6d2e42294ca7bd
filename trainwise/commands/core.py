"""Verbs: train, config, info."""

from __future__ import annotations

import json
import os
from pathlib import Path

from trainwise.config import config_to_toml, explain, load_config, parse_override
from trainwise.errors import ConfigError

# Fields that may change when a run is resumed: they do not alter the optimisation trajectory.
RESUMABLE_OVERRIDES = {
    "parallel.strategy",
    "parallel.backend",
    "train.micro_batch_size",
    "train.steps",
    "train.halt_after_steps",
    "train.checkpoint_every",
    "train.log_every",
    "train.threads",
    "log.progress",
    "log.mlflow",
}


def add_config_args(p, config_required: bool = True) -> None:
    p.add_argument("config", nargs=None if config_required else "?", help="TOML recipe, e.g. configs/lm-tiny.toml")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field (repeatable), e.g. --set train.steps=100",
    )


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config and write a run directory")
    add_config_args(p, config_required=False)
    p.add_argument("--run-dir", help="where to write the run (default: runs/<time>-<workload>-<precision>-<hash>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("config", help="print the resolved config, or every field with --explain")
    add_config_args(p, config_required=False)
    p.add_argument("--explain", action="store_true", help="list every field, its default and its meaning")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("info", help="device facts and measured peak matmul throughput per dtype")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--refresh", action="store_true", help="measure again instead of using the cache")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--config",
        help="also measure the peak on this recipe's own matmul shapes (one forward + backward of a micro-batch), "
        "e.g. configs/lm-small.toml; always measured now, never cached",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a field of --config (repeatable)",
    )
    p.set_defaults(func=cmd_info)


def resume_config(run_dir: Path, overrides: list[str]):
    cfg_path = run_dir / "config.toml"
    if not cfg_path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.toml there; is it a trainwise run directory?")
    for item in overrides:
        section, name, _ = parse_override(item)
        if f"{section}.{name}" not in RESUMABLE_OVERRIDES:
            raise ConfigError(
                f"--resume: {section}.{name} cannot change when resuming (it would change the run's trajectory); only {', '.join(sorted(RESUMABLE_OVERRIDES))} can"
            )
    return load_config(cfg_path, overrides)


def cmd_train(args) -> int:
    from trainwise.train.loop import train

    if args.resume:
        run_dir = Path(args.resume)
        if args.config or args.run_dir:
            raise ConfigError(
                "--resume RUN_DIR takes the config from RUN_DIR/config.toml: give no CONFIG or --run-dir with it"
            )
        cfg = resume_config(run_dir, args.overrides)
        check_tracking(cfg)
        result = train(cfg, run_dir, resume=True)
    else:
        if not args.config:
            raise ConfigError("give a CONFIG (e.g. configs/lm-tiny.toml) or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
        check_tracking(cfg)
        result = train(cfg, args.run_dir)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports and logs
        print_summary(result.run_dir, result.summary)
        log_to_mlflow(result.run_dir, cfg)
    return 0 if result.summary["status"] in ("completed", "early_stopped", "halted") else 1


def check_tracking(cfg) -> None:
    """log.mlflow needs MLflow: say so before training, not after it (a GPU image may lack it)."""
    import importlib.util

    try:
        missing = importlib.util.find_spec("mlflow") is None
    except ImportError:
        missing = True
    if cfg.log.mlflow and missing:
        raise ConfigError(
            "log.mlflow = true, but MLflow is not installed here: pip install mlflow, or --set log.mlflow=false "
            "(the run directory holds everything MLflow would get)"
        )


def log_to_mlflow(run_dir: Path, cfg) -> None:
    """Log the finished run to MLflow when `log.mlflow` is on (the run directory is complete either way)."""
    if not cfg.log.mlflow:
        return
    from trainwise.registry.tracking import log_run_if_enabled

    run_id = log_run_if_enabled(run_dir, cfg)
    if run_id:
        print(f"mlflow: logged as run {run_id} (browse with `trainwise ui`)")


def print_summary(run_dir: Path, s: dict) -> None:
    unit = s.get("throughput_unit", "tokens")

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    print(f"run: {run_dir}")
    print(
        f"status: {s['status']} after {s['steps']} steps ({s['precision']}, ac={s['ac']}, {s['strategy']} x{s['world_size']})"
    )
    print(f"loss: train {fmt(s['final_train_loss'], '.4f')}  val {fmt(s['final_val_loss'], '.4f')}")
    print(
        f"speed: median step {fmt(s['median_step_ms'], '.1f')} ms (min {fmt(s.get('min_step_ms'), '.1f')}, max {fmt(s.get('max_step_ms'), '.1f')}), {fmt(s['tokens_per_s'], ',.0f')} {unit}/s"
    )
    if s.get("peak_memory_bytes") is not None:
        print(
            f"memory: peak activations {s['peak_activation_bytes'] / 2**20:.1f} MiB, peak tracked total {s['peak_memory_bytes'] / 2**20:.1f} MiB"
        )
    if s.get("skipped_steps"):
        print(f"skipped steps: {s['skipped_steps']}")
    for alarm in s.get("alarms", []):
        print(f"ALARM: {alarm}")


def cmd_config(args) -> int:
    if args.explain:
        print(explain())
        return 0
    print(config_to_toml(load_config(args.config, args.overrides)))
    return 0


def cmd_info(args) -> int:
    import torch

    from trainwise.env import collect_info, format_info, pick_device
    from trainwise.model_peaks import measure_model_peaks

    if args.overrides and not args.config:
        raise ConfigError("--set needs --config: it overrides a field of that recipe")
    cfg = (
        load_config(args.config, args.overrides) if args.config else None
    )  # a bad recipe fails before anything is measured
    device = pick_device(args.device)
    if cfg is not None and cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)  # both probes under the threads the recipe trains with
    info = collect_info(device, refresh=args.refresh)
    if cfg is not None:
        info["model_gemm"] = {"config": args.config, **measure_model_peaks(cfg, device, info["matmul_gflops"])}
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
