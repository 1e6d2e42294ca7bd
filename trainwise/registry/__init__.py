"""MLflow-backed tracking and registry: versions with lineage, gated alias moves, an audit trail,
rollback and model cards. See docs/registry.md.

The public entry points other components use:
`log_run_to_mlflow(run_dir)`, `register_run(run_dir, name)`, `resolve_model_ref("NAME@ALIAS" | run_dir)`,
`load_model_by_alias(name, alias)`, `promote(...)`, `rollback(...)`.
"""

from trainwise.registry.promote import promote, rollback
from trainwise.registry.tracking import log_run_to_mlflow
from trainwise.registry.versions import load_model_by_alias, register_run, resolve_model_ref

__all__ = ["log_run_to_mlflow", "register_run", "resolve_model_ref", "load_model_by_alias", "promote", "rollback"]
