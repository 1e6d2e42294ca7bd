"""The one config tree: sections of typed, documented, validated fields.

Recipes are TOML files (`configs/*.toml`); any field can be overridden on the command line with
`--set section.field=value`. Validation happens once, at load time, and every error names the
field path, the bad value and what is allowed.

>>> cfg = load_config(None, ["train.steps=10", "precision.policy=bf16-mixed"])
>>> cfg.train.steps, cfg.precision.policy
(10, 'bf16-mixed')
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainwise.config_checks import (
    SEED_MAX,
    Needs,
    accumulation_steps,
    check_number,
    entry_problem,
    field_default,
    fsspec_url_problem,
    tracking_uri_problem,
    unused_fields,
    unused_message,
)
from trainwise.errors import ConfigError
from trainwise.train.names import AC_COST_ORDER, POLICY_NAMES


def F(default, help: str, *, choices=None, min=None, max=None, needs: Needs | None = None, check=None):  # noqa: A002 - mirrors the schema words
    """A config field: its default, its one-line help and what values are allowed.

    Numbers must also be finite and (integers) within int64; `needs` names the choice under which
    the field has an effect; `check(value)` returns what is wrong with a value, or None
    (trainwise.config_checks).
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "needs": needs, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


# built from the registries they name (trainwise.train.names, kept free of torch so the config loads fast)
PRECISION_POLICIES = list(POLICY_NAMES)
AC_MODES = [*AC_COST_ORDER, "auto"]
STRATEGIES = ["single", "ddp", "fsdp2"]

# The choices under which a field has an effect (trainwise.config_checks.Needs). Built-in workloads
# read only some model/data fields; your own workloads (entry, a registered name) get the whole config.
FILE_WORKLOAD = Needs("workload.name", ("file",))
ENTRY_WORKLOAD = Needs("workload.name", ("entry",))
NOT_TABLE_OR_IMAGE = Needs("workload.name", ("tabular", "vision", "file"), unless=True)
NOT_VISION = Needs("workload.name", ("vision",), unless=True)
FP16 = Needs("precision.policy", ("fp16-mixed",))
FP8 = Needs("precision.policy", ("fp8-tensorwise", "fp8-rowwise"))
FSDP2 = Needs("parallel.strategy", ("fsdp2",))
DISTRIBUTED = Needs("parallel.strategy", ("ddp", "fsdp2"))
# Upper bounds on sizes that allocate memory: far above any real setting, far below an overflow.
MAX_BATCH = 2**24
MAX_WIDTH = 2**20


@dataclass
class WorkloadConfig:
    name: str = F("lm", "built-in workload (lm, tabular, vision), or 'entry'/'file' for your own")
    entry: str = F(
        "",
        "your workload as 'package.module:function' returning a trainwise Workload",
        needs=ENTRY_WORKLOAD,
        check=entry_problem,
    )
    path: str = F(
        "", "a CSV or Parquet file to train a tabular classifier on (with workload.target)", needs=FILE_WORKLOAD
    )
    target: str = F("", "the target column of workload.path", needs=FILE_WORKLOAD)
    column_types: list = F(
        [], "override inferred column types, e.g. ['zip:categorical', 'age:numeric']", needs=FILE_WORKLOAD
    )


@dataclass
class ModelConfig:
    n_layers: int = F(4, "number of blocks (transformer blocks for lm, hidden layers for tabular)", min=1, max=4096)
    n_heads: int = F(4, "attention heads per block (lm)", min=1, max=MAX_WIDTH, needs=NOT_TABLE_OR_IMAGE)
    d_model: int = F(
        128, "model width: embedding size (lm), hidden width (tabular), channels (vision)", min=1, max=MAX_WIDTH
    )
    context: int = F(128, "context length in bytes (lm)", min=2, max=MAX_WIDTH, needs=NOT_TABLE_OR_IMAGE)
    dropout: float = F(0.0, "dropout probability", min=0.0, max=0.9, needs=NOT_VISION)
    init_from: str = F(
        "",
        "start from the weights of a trainwise run or model directory (fine-tuning; same architecture), '' = fresh "
        "weights",
    )


@dataclass
class DataConfig:
    max_corpus_bytes: int = F(
        0, "cap on the lm corpus size in bytes (0 = the whole standard library)", min=0, needs=NOT_TABLE_OR_IMAGE
    )
    val_fraction: float = F(
        0.1, "share of files (lm) or rows (tabular, vision) held out for validation", min=0.01, max=0.5
    )
    test_fraction: float = F(0.1, "share of files or rows held out for test", min=0.01, max=0.5)
    split_seed: int = F(0, "seed of the train/val/test split (independent of train.seed)", min=0, max=SEED_MAX)


@dataclass
class TrainConfig:
    steps: int = F(200, "optimizer steps", min=1)
    seed: int = F(0, "seed for weights, data order and dropout", min=0, max=SEED_MAX)
    micro_batch_size: int = F(16, "examples per forward/backward pass on one process", min=1, max=MAX_BATCH)
    global_batch_size: int = F(
        16, "examples per optimizer step over all processes and accumulation steps", min=1, max=MAX_BATCH
    )
    # AdamW moves a weight by about lr per step, so above 10 nothing trains; near float32's limit
    # (3.4e38) the optimizer's own kernels overflow.
    lr: float = F(1e-3, "peak learning rate (AdamW)", min=0.0, max=10.0)
    min_lr_ratio: float = F(0.1, "final learning rate as a share of train.lr (cosine decay)", min=0.0, max=1.0)
    warmup_steps: int = F(20, "linear warm-up steps", min=0)
    weight_decay: float = F(0.1, "AdamW weight decay (not applied to biases and norms)", min=0.0, max=10.0)
    beta1: float = F(0.9, "AdamW beta1", min=0.0, max=1.0)
    beta2: float = F(0.95, "AdamW beta2", min=0.0, max=1.0)
    grad_clip: float = F(1.0, "clip the global gradient norm to this (0 = off)", min=0.0)
    eval_every: int = F(50, "validate every this many steps (0 = only at the end)", min=0)
    eval_batches: int = F(8, "micro-batches of the validation split per validation", min=1, max=MAX_BATCH)
    early_stopping_patience: int = F(0, "stop after this many validations without improvement (0 = off)", min=0)
    checkpoint_every: int = F(100, "write a resumable checkpoint every this many steps (0 = only at the end)", min=0)
    halt_after_steps: int = F(0, "stop this invocation after this many steps as if interrupted (0 = off)", min=0)
    compile: bool = F(False, "compile each block with torch.compile")
    device: str = F("auto", "device to train on", choices=["auto", "cpu", "cuda"])
    threads: int = F(0, "CPU threads for torch (0 = torch's default)", min=0, max=4096)
    log_every: int = F(10, "log a metrics.jsonl line every this many steps", min=1)
    on_nonfinite: str = F("skip", "what to do on a non-finite loss or gradient", choices=["skip", "stop"])


@dataclass
class PrecisionConfig:
    policy: str = F("fp32", "precision policy", choices=PRECISION_POLICIES)
    init_scale: float = F(65536.0, "fp16-mixed: initial loss scale", min=1.0, max=2.0**64, needs=FP16)
    loss_scale_floor: float = F(1.0, "fp16-mixed: alarm when the loss scale falls below this", min=0.0, needs=FP16)
    max_skipped_share: float = F(
        0.05, "fp16-mixed: alarm when more than this share of steps is skipped", min=0.0, max=1.0
    )
    allow_tf32: bool = F(
        False,
        "let fp32 matmuls and convolutions run as TF32 on CUDA (10-bit mantissa, sm_80+); env.json "
        "precision.fp32_matmul says what ran",
        needs=Needs("train.device", ("cpu",), unless=True),
    )
    keep_high_precision: list = F([], "module-name patterns kept out of FP8, or ['auto']", needs=FP8)
    auto_gpu: str = F(
        "h100",
        "keep_high_precision = ['auto']: GPU class whose FP8 speed verdict counts ('any' = numerics only)",
        choices=["h100", "h200", "l4", "a100", "any"],
        needs=Needs("precision.keep_high_precision", (["auto"],)),
    )
    grad_spike_factor: float = F(
        10.0, "alarm when a gradient norm exceeds this times the median of recent steps", min=1.0
    )


@dataclass
class MemoryConfig:
    ac: str = F("none", "activation checkpointing mode", choices=AC_MODES)
    ac_every: int = F(
        2,
        "every-n: checkpoint every n-th block (also what ac='auto' may choose)",
        min=1,
        max=4096,
        needs=Needs("memory.ac", ("every-n", "auto")),
    )
    budget_gib: float = F(0.0, "memory budget in GiB for ac='auto' and fit-batch (0 = none)", min=0.0, max=2.0**20)
    block_classes: list = F([], "module class names that are blocks (found automatically if empty)")


@dataclass
class ParallelConfig:
    strategy: str = F("single", "data-parallel strategy", choices=STRATEGIES)
    reshard_after_forward: bool = F(True, "fsdp2: free gathered parameters after forward", needs=FSDP2)
    backend: str = F(
        "auto",
        "process-group backend (auto = nccl on CUDA, gloo on CPU)",
        choices=["auto", "nccl", "gloo"],
        needs=DISTRIBUTED,
    )
    param_dtype: str = F(
        "auto", "fsdp2: dtype parameters are gathered in", choices=["auto", "fp32", "bf16"], needs=FSDP2
    )
    reduce_dtype: str = F(
        "auto", "fsdp2: dtype gradients are reduced in", choices=["auto", "fp32", "bf16"], needs=FSDP2
    )


@dataclass
class EvalConfig:
    split: str = F("test", "split to evaluate", choices=["val", "test"])
    slices: list = F([], "columns to compute per-slice metrics on")
    min_slice_count: int = F(30, "slices with fewer examples are flagged", min=1)
    batch_size: int = F(256, "examples per evaluation batch", min=1, max=MAX_BATCH)


@dataclass
class LogConfig:
    progress: bool = F(True, "show a progress line (step, loss, tokens/s, ETA) on stderr")
    mlflow: bool = F(
        True, "log params, metrics and artifacts to MLflow (registry.tracking_uri, default sqlite:///mlflow.db)"
    )


@dataclass
class RegistryConfig:
    tracking_uri: str = F(
        "",
        "MLflow tracking/registry URI ('' = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
        check=tracking_uri_problem,
    )
    experiment: str = F("trainwise", "MLflow experiment that training and bench runs are logged to")


@dataclass
class MonitorConfig:
    alpha: float = F(
        0.025,
        "drift tests: Benjamini-Hochberg level; the dataset-level false-alarm rate is at most this",
        min=0.0001,
        max=0.5,
    )
    min_wasserstein_sd: float = F(
        0.1, "numeric columns: smallest Wasserstein distance, in reference SDs, that counts as drift", min=0.0
    )
    min_js_distance: float = F(
        0.05, "categorical columns: smallest Jensen-Shannon distance (base 2) that counts as drift", min=0.0, max=1.0
    )
    min_auc: float = F(0.55, "multivariate: smallest domain-classifier AUC that counts as drift", min=0.5, max=1.0)
    min_window_rows: int = F(
        30, "windows (or columns) with fewer non-missing rows are reported as too small to judge", min=2
    )
    n_resamples: int = F(
        200, "reference resamples per window size that calibrate the effect-size thresholds", min=20, max=100_000
    )
    max_calibration_rows: int = F(
        5000,
        "resample at most this many rows; larger windows scale the threshold by 1/sqrt(n)",
        min=100,
        max=10_000_000,
    )
    multivariate: bool = F(True, "run the domain-classifier test across all input columns")
    multivariate_rows: int = F(
        2000,
        "rows sampled from each side for the domain classifier",
        min=100,
        max=10_000_000,
        needs=Needs("monitor.multivariate", (True,)),
    )
    label_column: str = F("label", "column holding true labels, where they have arrived")
    ignore_columns: list = F(["timestamp", "request_id", "id"], "columns never tested for drift")
    trigger_columns: list = F([], "retrain trigger: drift in any of these columns (['*'] = dataset-level drift)")
    trigger_est_accuracy_drop: float = F(
        0.0, "retrain trigger: estimated (label-free) accuracy drop above this (0 = off)", min=0.0, max=1.0
    )
    trigger_realised_drop: float = F(
        0.0, "retrain trigger: realised accuracy drop above this (0 = off)", min=0.0, max=1.0
    )
    trigger_max_age_days: float = F(
        0.0, "retrain trigger: model older than this many days (0 = off)", min=0.0, max=36500.0
    )


@dataclass
class ServeConfig:
    max_batch_size: int = F(
        64, "serve: most requests run together in one model call (1 = no batching)", min=1, max=MAX_BATCH
    )
    max_wait_ms: float = F(
        5.0, "serve: longest a request waits for others to fill its batch, in ms", min=0.0, max=60_000.0
    )
    queue_size: int = F(1024, "serve: requests waiting at most; more are answered 503 with Retry-After", min=1)
    max_instances: int = F(64, "serve: instances accepted in one request", min=1, max=MAX_BATCH)
    precision: str = F(
        "fp32", "serve: inference precision (int8 = int8 weight-only through torchao)", choices=["fp32", "bf16", "int8"]
    )
    threads: int = F(0, "serve: CPU threads for torch inference (0 = torch's default)", min=0, max=4096)
    log_dir: str = F(
        "", "serve: prediction log folder or fsspec URL, a Parquet dataset ('' = off)", check=fsspec_url_problem
    )
    log_flush_rows: int = F(
        256,
        "serve: flush the prediction log after this many rows",
        min=1,
        needs=Needs("serve.log_dir", ("",), unless=True),
    )
    log_flush_s: float = F(
        2.0,
        "serve: or after this many seconds",
        min=0.01,
        max=86_400.0,
        needs=Needs("serve.log_dir", ("",), unless=True),
    )
    api_keys_file: str = F(
        "", "serve: file with one API key per line; when set, requests need 'Authorization: Bearer KEY'"
    )
    max_body_bytes: int = F(1_000_000, "serve: larger request bodies are answered 413", min=1)
    rate_limit_per_s: float = F(0.0, "serve: requests per second allowed per API key or client (0 = no limit)", min=0.0)
    rate_burst: int = F(
        20,
        "serve: requests a key may send at once above its rate",
        min=1,
        needs=Needs("serve.rate_limit_per_s", (0.0,), unless=True),
    )
    auth_failures_burst: int = F(
        10,
        "serve: with API keys, requests with a wrong or missing key one client address may send at once; "
        "past them it is answered 429 without its key being checked",
        min=1,
    )
    auth_failures_per_s: float = F(
        0.1, "serve: and then this many such requests per second (0.1 = one guess every 10 s)", min=0.001
    )
    rate_limit_clients: int = F(
        100_000,
        "serve: most clients (API keys or addresses) the rate limits keep a bucket for; "
        "the least recently seen is forgotten first",
        min=1,
    )
    poll_alias_s: float = F(
        5.0, "serve: check a NAME@ALIAS reference for a moved alias this often (0 = never)", min=0.0, max=86_400.0
    )


@dataclass
class BenchConfig:
    tolerance: float = F(
        0.02,
        "quality gate: largest accepted rise of the validation loss over the fp32 control, as a share of the "
        "control's loss",
        min=0.0,
        max=1.0,
    )
    confidence: float = F(0.95, "quality gate: one-sided confidence of the paired bootstrap bound", min=0.5, max=0.999)
    target_val_loss: float = F(
        0.0,
        "validation loss whose first crossing times each variant (0 = the fp32 control's final loss x (1 + tolerance))",
        min=0.0,
    )
    memory_budget_gib: float = F(
        0.0, "recommend only variants whose peak tracked memory fits this many GiB (0 = no budget)", min=0.0
    )
    repeats: int = F(
        1,
        "retired (must be 1): each variant trains once; its speed comes from the interleaved timing rounds "
        "(bench.timing_rounds)",
        min=1,
    )
    cost_per_hour: float = F(0.0, "price of the machine per hour: turns run times into money (0 = not shown)", min=0.0)
    baseline: bool = F(True, "add a row trained by a minimal plain-PyTorch loop, to show trainwise's own overhead")
    timing_rounds: int = F(
        10,
        "after training, time every variant's step in this many interleaved rounds (A B C A B C); each speed ratio "
        "is the median of the per-round ratios (0 = no timing phase: speeds from the training runs)",
        min=0,
    )
    timing_steps_per_round: int = F(
        2, "timed steps of each variant per timing round (after 2 untimed warm-up steps per process)", min=1
    )
    max_ratio_ci: float = F(
        0.10,
        "a speed ratio whose 95% confidence interval reaches further than this share from its median is reported as "
        "unreliable instead of quoted",
        min=0.0,
    )
    max_load_per_core: float = F(
        1.0,
        "timings are unreliable when the load average from other processes (the timed process's own threads "
        "subtracted) exceeds this per core during the timing rounds",
        min=0.0,
    )
    control_seeds: int = F(
        2,
        "train the fp32 control with this many seeds (train.seed, +1, ...): their spread is the noise floor the "
        "quality verdicts allow for",
        min=1,
    )
    prune_slowdown: float = F(
        4.0,
        "stop a variant once its steps take at least this many times the control's same steps (its first two can be "
        "enough) and it saves no memory over a faster finished variant (> 1; emulated fp8 is never pruned)",
        min=0.0,
    )
    budget_min: float = F(
        0.0,
        "time budget in minutes: plan train.steps from measured speed so that the whole bench fits (0 = no budget: "
        "train.steps as given)",
        min=0.0,
    )
    min_gain: float = F(
        0.10,
        "recommend a more complex variant over a simpler one only when its speed-up is clear of the measured noise "
        "by more than this share",
        min=0.0,
    )


@dataclass
class Config:
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)


# ---------------------------------------------------------------------------------------------
# loading, overriding, validating


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _fields(section_cls) -> dict[str, dataclasses.Field]:
    hints = typing.get_type_hints(section_cls)
    out = {}
    for f in dataclasses.fields(section_cls):
        f.type = hints[f.name]
        out[f.name] = f
    return out


def field_paths() -> list[str]:
    """Every valid `section.field` path."""
    return [f"{s}.{n}" for s, cls in _sections().items() for n in _fields(cls)]


def closest_choices(value: str, choices: list[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The valid values a mistyped `value` most likely meant, best first.

    Ranked: a case-insensitive exact match; then choices that `value` begins (in declaration order,
    which lists the recommended choice first, so 'bf16' means bf16-mixed, not bf16-true); then
    choices that begin `value` ('fp16-mixed-precision' -> fp16-mixed); then difflib's similarity.

    >>> closest_choices("bf16", ["fp32", "bf16-mixed", "fp16-mixed", "bf16-true"])
    ['bf16-mixed']
    >>> closest_choices("BF16-True", ["fp32", "bf16-mixed", "bf16-true"])
    ['bf16-true']
    >>> closest_choices("fp8", ["fp32", "fp8-tensorwise", "fp8-rowwise"], n=2)
    ['fp8-tensorwise', 'fp8-rowwise']
    >>> closest_choices("stpes", ["steps", "seed"])
    ['steps']
    """
    v = str(value).strip().lower()
    ranked = [c for c in choices if c.lower() == v]
    ranked += [c for c in choices if c.lower().startswith(v) and v]
    ranked += [c for c in choices if v.startswith(c.lower()) and c]
    lowered = {c.lower(): c for c in choices}
    ranked += [lowered[c] for c in difflib.get_close_matches(v, list(lowered), n=n, cutoff=cutoff)]
    return list(dict.fromkeys(ranked))[:n]


def _unknown(kind: str, name: str, valid: list[str], where: str) -> ConfigError:
    close = closest_choices(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{where}: unknown {kind} '{name}'{hint} (valid: {', '.join(valid)})")


def _type_name(t) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}[t]


def _check_value(path: str, f: dataclasses.Field, value: Any) -> Any:
    """Return `value` converted to the field's type, or raise naming the field and the rule."""
    t, meta = f.type, f.metadata
    ok = (
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (t is str and isinstance(value, str))
        or (t is list and isinstance(value, list))
    )
    if not ok:
        raise ConfigError(f"{path} = {value!r}: expected {_type_name(t)}, got {type(value).__name__}")
    if t is float:
        try:
            value = float(value)
        except OverflowError:  # an integer beyond float range, e.g. 10**400 written without a dot
            raise ConfigError(f"{path} = {value}: expected a finite number") from None
    if t is list and not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path} = {value!r}: expected a list of strings")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        close = closest_choices(str(value), choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{path} = {value!r}: expected one of {', '.join(choices)}{hint}")
    if t in (int, float):
        check_number(path, value, meta.get("min"), meta.get("max"))
    problem = meta["check"](value) if meta.get("check") else None
    if problem:
        raise ConfigError(f"{path} = {value!r}: {problem}")
    return value


def _parse_override_value(f: dataclasses.Field, text: str) -> Any:
    """Parse the right-hand side of `--set a.b=VALUE` for the field's type."""
    t = f.type
    if t is str:
        return text
    if t is list:
        if text.strip().startswith("["):
            return _toml_value(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    if t is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        return text
    try:
        return int(text) if t is int else float(text)
    except ValueError:
        return text  # _check_value names the field and the expected type


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, str, str]:
    """Split 'section.field=value' into its parts, validating the path."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. train.steps=100")
    key, text = item.split("=", 1)
    key = key.strip()
    if key.count(".") != 1:
        raise ConfigError(f"--set {item!r}: expected section.field=value, e.g. train.steps=100")
    section, name = key.split(".")
    sections = _sections()
    if section not in sections:
        raise _unknown("section", section, list(sections), f"--set {key}")
    fields = _fields(sections[section])
    if name not in fields:
        raise _unknown("field", name, list(fields), f"--set {key}")
    return section, name, text


def _merged_values(data: dict, overrides: list[str], sections: dict, source: str) -> dict[str, dict]:
    """{section: {field: value}} from the TOML tables, with the --set overrides applied on top."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of sections")
    merged: dict[str, dict] = {}
    for section, values in data.items():
        if section not in sections:
            raise _unknown("section", section, list(sections), source)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table of fields, got {values!r}")
        merged[section] = dict(values)
    for item in overrides:
        section, name, text = parse_override(item)
        f = _fields(sections[section])[name]
        merged.setdefault(section, {})[name] = _parse_override_value(f, text)
    return merged


def build_config(data: dict, overrides: list[str] = (), source: str = "config", unused: str = "error") -> Config:
    """Validate a nested dict (as read from TOML) plus overrides into a Config.

    `unused`: what a value set for a field without effect under the config's choices gets (see
    trainwise.config_checks): "error", or "keep" for a caller that applies its own rule (the bench).
    """
    sections = _sections()
    merged = _merged_values(data, overrides, sections, source)
    kwargs = {}
    for section, cls in sections.items():
        fields = _fields(cls)
        values = merged.get(section, {})
        checked = {}
        for name, value in values.items():
            if name not in fields:
                raise _unknown("field", name, list(fields), f"{source}: [{section}]")
            checked[name] = _check_value(f"{section}.{name}", fields[name], value)
        kwargs[section] = cls(**checked)
    cfg = Config(**kwargs)
    if unused == "error":
        for path, value, needs in unused_fields(cfg, all_fields()):
            raise ConfigError(unused_message(path, value, needs, cfg))
    validate_relations(cfg)
    return cfg


def all_fields() -> dict[str, dict[str, dataclasses.Field]]:
    """{section: {name: Field}} of the whole tree."""
    return {section: _fields(cls) for section, cls in _sections().items()}


def reset_fields(cfg: Config, paths: list[str]) -> Config:
    """A copy of `cfg` with the fields at `paths` back at their defaults."""
    sections = {}
    for path in paths:
        section, name = path.split(".")
        sections.setdefault(section, {})[name] = field_default(_fields(_sections()[section])[name])
    return dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s), **v) for s, v in sections.items()})


def validate_relations(cfg: Config) -> None:
    """Rules that involve more than one field."""
    accumulation_steps(cfg.train.global_batch_size, cfg.train.micro_batch_size)  # world size is not known yet
    if cfg.workload.name == "lm" and cfg.model.d_model % cfg.model.n_heads:
        raise ConfigError(
            f"model.d_model = {cfg.model.d_model} is not divisible by model.n_heads = {cfg.model.n_heads}"
        )
    if cfg.workload.name == "file" and not (cfg.workload.path and cfg.workload.target):
        raise ConfigError("workload.name = 'file' needs workload.path (a CSV/Parquet file) and workload.target")
    if cfg.bench.prune_slowdown <= 1:
        raise ConfigError(
            f"bench.prune_slowdown = {cfg.bench.prune_slowdown!r}: must be > 1 (a variant is stopped when its steps "
            "take at least "
            "this many times the fp32 control's; 4 stops what is 4x slower)"
        )
    if cfg.workload.name == "entry" and not cfg.workload.entry:
        raise ConfigError("workload.name = 'entry' needs workload.entry = 'package.module:function'")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Load a TOML recipe (or only defaults when `path` is None) and apply `--set` overrides."""
    if path is None:
        return build_config({}, overrides, "defaults")
    data = read_toml(path, "config file", "a TOML recipe such as configs/lm-tiny.toml")
    return build_config(data, overrides, str(path))


def read_toml(path: str | Path, what: str, expected: str) -> dict:
    """Parse a TOML file, or raise one ConfigError naming the file and what was expected."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist (expected {expected})")
    try:
        return tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {p} is not valid TOML: {e}") from None


# ---------------------------------------------------------------------------------------------
# writing, hashing, explaining


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def _toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_literal(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def config_to_toml(cfg: Config) -> str:
    """The fully resolved config as TOML, every default written out with its help as a comment."""
    lines = []
    for section, cls in _sections().items():
        lines.append(f"[{section}]")
        obj = getattr(cfg, section)
        for name, f in _fields(cls).items():
            lines.append(f"{name} = {_toml_literal(getattr(obj, name))}  # {f.metadata['help']}")
        lines.append("")
    return "\n".join(lines)


def config_hash(cfg: Config, ignore: tuple[str, ...] = ("log.progress",)) -> str:
    """A short, stable hash of the resolved config (fields in `ignore` left out)."""
    d = config_to_dict(cfg)
    for path in ignore:
        s, n = path.split(".")
        d[s].pop(n, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def explain() -> str:
    """Every field with its default and description, for `trainwise config --explain`."""
    out = []
    for section, cls in _sections().items():
        out.append(f"[{section}]")
        for name, f in _fields(cls).items():
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            allowed = ""
            if f.metadata.get("choices"):
                allowed = f" (one of: {', '.join(f.metadata['choices'])})"
            elif f.metadata.get("min") is not None or f.metadata.get("max") is not None:
                lo, hi = f.metadata.get("min"), f.metadata.get("max")
                bounds = [f">= {lo}"] * (lo is not None) + [f"<= {hi}"] * (hi is not None)
                allowed = f" ({', '.join(bounds)})"
            needs = f.metadata.get("needs")
            used = f" [used only when {needs.describe()}]" if needs else ""
            out.append(f"  {section}.{name} = {_toml_literal(default)}  {f.metadata['help']}{allowed}{used}")
        out.append("")
    return "\n".join(out)
