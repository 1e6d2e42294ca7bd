"""`build_run(cfg) -> Run`: everything the training loop needs, set up and validated before the
first step; and `TrainState`, what a checkpoint carries besides the tensors.

The order matters and is the one of DESIGN.md: seed, workload, preflight of its output, the AC
mode and the FP8 split (both may probe the model), `prepare()` (the techniques, in their one
order), optimizer and loss scaler; only when all of that succeeded does the run directory appear,
so a config that cannot train leaves nothing behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from trainwise.config import Config
from trainwise.config_checks import accumulation_steps
from trainwise.env import pick_device
from trainwise.numerics.hybrid import resolve_auto_split
from trainwise.train.autoac import resolve_ac_mode
from trainwise.train.checkpoint import load_checkpoint
from trainwise.train.checkpoint_dcp import carry_training_state
from trainwise.train.data import StepSampler, eval_indices
from trainwise.train.health import HealthMonitor
from trainwise.train.parallel import (
    DistContext,
    broadcast_from_main,
    elastic_restart,
    local_device,
    setup_distributed,
    shard_fn,
)
from trainwise.train.precision import Policy, get_policy, make_grad_scaler
from trainwise.train.preflight import check_model_output
from trainwise.train.rundir_setup import RunFiles, default_run_dir, open_run_dir
from trainwise.train.setup import Prepared, prepare
from trainwise.train.step import StepParts, make_optimizer, sampled_batches
from trainwise.workloads.base import Workload, build_model_from_spec
from trainwise.workloads.build import build_workload

STEP_MS_KEPT = 10_000  # step times carried across a resume: the median of the newest this many
RECENT_LOSSES_KEPT = 10  # the final train loss is the mean of the last this many steps


@dataclass
class TrainState:
    """What a checkpoint keeps besides the tensors, so that a resumed run's summary equals an
    uninterrupted run's. Saved as checkpoint state.json's "history" (these key names)."""

    best_val: float = float("inf")  # early stopping: the best validation loss so far
    bad_evals: int = 0  # evaluations since it last improved
    val: dict = field(default_factory=dict)  # the last evaluation
    memory: dict = field(default_factory=dict)  # the measured step's memory (empty until measured)
    health: dict | None = None  # HealthMonitor.state()
    recent_losses: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)  # timed steps (not an invocation's first)

    @classmethod
    def from_history(cls, history: dict) -> TrainState:
        return cls(**{k: history[k] for k in cls.__dataclass_fields__ if k in history})

    def to_history(self, health: HealthMonitor) -> dict:
        self.health = health.state()
        return {**self.__dict__, "step_ms": self.step_ms[-STEP_MS_KEPT:]}

    def record_loss(self, loss: float) -> None:
        self.recent_losses = (self.recent_losses + [loss])[-RECENT_LOSSES_KEPT:]

    def record_eval(self, val: dict) -> None:
        self.val = val
        if val["val_loss"] < self.best_val - 1e-6:
            self.best_val, self.bad_evals = val["val_loss"], 0
        else:
            self.bad_evals += 1

    def stop_early(self, patience: int) -> bool:
        return bool(patience) and self.bad_evals >= patience


@dataclass
class Run:
    """One training run, built by `build_run`: the prepared model and what its steps need."""

    cfg: Config
    device: torch.device
    dist: DistContext
    policy: Policy
    workload: Workload
    prepared: Prepared
    optimizer: torch.optim.AdamW
    scaler: torch.amp.GradScaler | None
    health: HealthMonitor
    parts: StepParts  # what train_step touches
    files: RunFiles  # the run directory
    val_batches: list[torch.Tensor]
    units_per_step: int  # tokens (lm) or samples per optimizer step
    ac_mode: str  # the applied AC mode ('auto' resolved)
    ac_note: str  # how 'auto' chose it
    start_step: int = 0  # > 0 when resumed
    state: TrainState = field(default_factory=TrainState)

    @property
    def model(self) -> torch.nn.Module:
        return self.prepared.model


def prepare_for(cfg: Config, workload: Workload, policy: Policy, device, dist: DistContext, ac_mode: str) -> Prepared:
    """prepare() with the run's techniques: FP8 (with its auto split), AC, compile, sharding."""
    keep_high_precision, fp8_auto = resolve_auto_split(cfg, workload, policy)  # ['auto'] -> layer names
    prepared = prepare_model(cfg, workload, workload.model, policy, device, dist, ac_mode, keep_high_precision)
    prepared.fp8_auto = fp8_auto
    return prepared


def prepare_model(
    cfg: Config, workload: Workload, model, policy: Policy, device, dist: DistContext, ac_mode: str, keep: list[str]
) -> Prepared:
    """prepare() of `model` (the workload's architecture) with the run's settings and `ac_mode`."""
    mem = cfg.memory
    shard = shard_fn(
        cfg.parallel.strategy, dist, device, policy, cfg.parallel, workload.block_classes, mem.block_classes
    )
    return prepare(
        model,
        policy=policy,
        device=device,
        ac_mode=ac_mode,
        ac_every=mem.ac_every,
        compile=cfg.train.compile,
        block_classes=workload.block_classes,
        block_class_names=mem.block_classes,
        keep_high_precision=keep,
        shard=shard,
    )


def rebuild_with_ac(run: Run, ac_mode: str) -> None:
    """Auto AC's fallback: the run's model, prepared again with `ac_mode`, training state kept.

    A fresh model of the workload's architecture goes through prepare() as at the start, so the
    techniques keep their one order (FP8, AC, compile, shard) instead of a compiled or sharded model
    being rewrapped; the weights and AdamW's state are carried over by their plain names, and the
    loss scaler, the data order and the step count stay as they are. Every rank calls it.
    """
    with torch.random.fork_rng(devices=[]):  # the fresh weights are overwritten; keep the run's RNG stream
        fresh = build_model_from_spec(run.workload.spec)
    old = run.prepared
    prepared = prepare_model(
        run.cfg, run.workload, fresh, run.policy, run.device, run.dist, ac_mode, old.keep_high_precision
    )
    prepared.fp8_auto = old.fp8_auto
    tc = run.cfg.train
    optimizer = make_optimizer(prepared.model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2))
    carry_training_state(old.model, run.optimizer, prepared.model, optimizer)
    run.workload.model, run.prepared, run.optimizer, run.ac_mode = fresh, prepared, optimizer, ac_mode
    run.parts = replace(run.parts, model=prepared.model, optimizer=optimizer)
    run.health.model = prepared.model


def agree_on_run_dir(dist: DistContext, cfg: Config, run_dir, resume: bool) -> tuple[Path, bool]:
    """All ranks agree on the run directory's path; a group that torchrun restarted after a
    failure resumes from the last checkpoint by itself."""
    path = Path(run_dir) if run_dir else default_run_dir(cfg)
    restarted = elastic_restart(dist) and run_dir is not None and (path / "config.toml").is_file()
    return broadcast_from_main(dist, (path, resume or restarted))


def kill_step_for_tests(dist: DistContext) -> int | None:
    """Fault injection for the tests, read once: TRAINWISE_TEST_KILL="RANK:STEP" makes that rank
    SIGKILL itself right after writing checkpoint STEP, in the first attempt only (RunFiles)."""
    spec = os.environ.get("TRAINWISE_TEST_KILL")
    if not spec or elastic_restart():
        return None
    rank, step = (int(v) for v in spec.split(":"))
    return step if rank == dist.rank else None


def build_run(cfg: Config, run_dir: str | Path | None = None, resume: bool = False) -> Run:
    """Set up a run (see the module note for the order); resumes from its last checkpoint."""
    tc = cfg.train
    device = pick_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    policy = get_policy(cfg.precision.policy, device, cfg.precision.allow_tf32)
    dist = setup_distributed(cfg.parallel.strategy, cfg.parallel.backend, device)
    device = local_device(dist, device)
    micro_per_step = accumulation_steps(tc.global_batch_size, tc.micro_batch_size, dist.world_size)
    torch.manual_seed(tc.seed)  # before the model is built: initial weights depend only on train.seed
    workload = build_workload(cfg)
    check_model_output(workload, tc.micro_batch_size)  # output shape vs task and classes; same verdict on every rank
    ac_mode, ac_note = resolve_ac_mode(cfg, workload, dist.world_size)  # 'auto' -> a concrete mode
    prepared = prepare_for(cfg, workload, policy, device, dist, ac_mode)
    optimizer = make_optimizer(prepared.model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2))
    scaler = make_grad_scaler(policy, device, cfg.precision.init_scale)
    sampler = StepSampler(
        len(workload.train), tc.global_batch_size, tc.micro_batch_size, dist.world_size, dist.rank, tc.seed
    )
    # Everything is validated: only now does the run directory appear.
    run_dir, resume = agree_on_run_dir(dist, cfg, run_dir, resume)
    files = open_run_dir(cfg, run_dir, resume, workload, policy, prepared, dist, device)
    files.kill_after_checkpoint = kill_step_for_tests(dist)
    start_step, state = 0, TrainState()
    if files.resume_from is not None:  # open_run_dir verified its manifest and chose it
        ckpt = load_checkpoint(files.resume_from, prepared.model, optimizer, scaler, verify=False)
        start_step, state = ckpt["step"], TrainState.from_history(ckpt["history"])
    health = HealthMonitor(policy, cfg.precision, tc.on_nonfinite, prepared.model, state=state.health)
    batches = sampled_batches(workload.train, sampler)
    parts = StepParts(
        prepared.model, optimizer, scaler, batches, workload.loss_fn, policy, device, dist, micro_per_step, tc.grad_clip
    )
    val_batches = eval_indices(len(workload.val), tc.eval_batches, tc.micro_batch_size)
    units_per_step = workload.units_per_example * tc.global_batch_size
    return Run(
        cfg, device, dist, policy, workload, prepared, optimizer, scaler, health, parts, files,
        val_batches, units_per_step, ac_mode, ac_note, start_step, state,
    )  # fmt: skip
