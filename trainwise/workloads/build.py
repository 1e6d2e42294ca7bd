"""`build_workload(cfg)`: the configured workload, from the registry of workload functions."""

from __future__ import annotations

from trainwise.config import Config
from trainwise.errors import ConfigError, TrainwiseError
from trainwise.rundir import load_weights_into
from trainwise.workloads.base import Workload, get_workload_fn


def build_workload(cfg: Config) -> Workload:
    """The configured workload; errors from a user's entry point are reported, not raised raw."""
    fn = get_workload_fn(cfg.workload.name)
    try:
        workload = fn(cfg)
    except TrainwiseError:
        raise
    except Exception as e:  # the user's workload function failed: say where, without a traceback
        raise ConfigError(f"workload {cfg.workload.name!r} failed to build: {type(e).__name__}: {e}") from None
    if cfg.model.init_from:
        load_weights_into(workload.model, cfg.model.init_from)
    return workload
