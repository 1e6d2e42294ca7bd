"""Bad input: one clear error each (exit 2, one line, no traceback), and the registry left unchanged."""

from __future__ import annotations

import shutil

import pytest

from trainwise.train.parallel import free_port


@pytest.fixture(scope="module")
def registered(store, runs):
    from trainwise.registry import promote, register_run

    run_dir = runs("good")
    register_run(run_dir, "known")
    register_run(run_dir, "known")
    promote("known", "1", "champion")
    return run_dir


def snapshot(uri: str):
    """Everything a failed command must not change: models, versions, aliases, audit entries, runs."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    c = MlflowClient(uri, uri)
    models = {m.name: dict(m.aliases) for m in c.search_registered_models()}
    versions = sorted((v.name, str(v.version)) for v in c.search_model_versions())
    exps = c.search_experiments(view_type=ViewType.ALL)
    n_runs = len(c.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL)) if exps else 0
    return models, versions, n_runs


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["promote", "nope", "1"], "no registered model named 'nope'"),
        (["promote", "known", "7"], "has no version '7' (versions: 1, 2)"),
        (["promote", "known", "x"], "has no version 'x' (versions: 1, 2)"),
        (["rollback", "known", "--alias", "staging"], "has no alias 'staging' (aliases: champion -> v1)"),
        (["rollback", "known"], "no previous holder recorded; name one with --to VERSION (versions: 1, 2)"),
        (["rollback", "known", "--to", "9"], "has no version '9'"),
        (["promote", "known", "2", "--alias", "latest"], "alias 'latest' is not valid"),
        (["promote", "known", "2", "--force"], "--force needs --reason"),
        (["history", "nope"], "(registered: known)"),
        (["history", "known", "--at", "yesterday"], "--at 'yesterday': expected an ISO 8601 time"),
        (["card", "known", "3"], "has no version '3' (versions: 1, 2)"),
    ],
)
def test_unknown_name_version_alias(registered, store, cli, argv, expected):
    before = snapshot(store)
    code, out, err = cli(*argv)
    assert code == 2 and expected in err and "Traceback" not in err and err.count("\n") == 1, err
    assert snapshot(store) == before


def test_run_dir_without_model(registered, store, cli, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(registered, bare)
    shutil.rmtree(bare / "model")
    before = snapshot(store)
    code, out, err = cli("register", bare, "--name", "known")
    assert code == 2 and f"{bare} holds no model" in err
    code, out, err = cli("register", tmp_path / "missing", "--name", "known")
    assert code == 2 and "does not exist" in err
    assert snapshot(store) == before


def test_tampered_run_dir_is_not_registered(registered, store, cli, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(registered, bad)
    (bad / "model" / "weights.safetensors").write_bytes(b"x" * 100)
    before = snapshot(store)
    code, out, err = cli("register", bad, "--name", "known")
    assert code == 2 and "does not match the hash" in err
    assert snapshot(store) == before


def test_unreachable_server(registered, store, cli):
    uri = f"http://127.0.0.1:{free_port()}"
    before = snapshot(store)
    for argv in (["register", registered, "--name", "known"], ["promote", "known", "2"], ["history", "known"]):
        code, out, err = cli(*argv, "--tracking-uri", uri)
        assert code == 2 and f"tracking server {uri} is unreachable" in err and "mlflow server" in err, err
    assert snapshot(store) == before


def test_unsupported_uri_and_missing_folder(registered, cli, tmp_path):
    code, out, err = cli("history", "known", "--tracking-uri", "ftp://x")
    assert code == 2 and "is not supported" in err
    code, out, err = cli("history", "known", "--tracking-uri", f"sqlite:///{tmp_path}/no/such/mlflow.db")
    assert code == 2 and "does not exist" in err


def test_missing_run_directory_reference_is_a_clear_error():
    from trainwise.errors import DataError
    from trainwise.registry.versions import resolve_model_ref

    with pytest.raises(DataError, match="run directory /no/such/dir does not exist"):
        resolve_model_ref("/no/such/dir")
