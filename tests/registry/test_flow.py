"""register -> promote (passes) -> promote a worse version (refused) -> force -> roll back, through the
CLI and the real gate, on real runs: v1 undertrained (2 steps), v2 good, v3 never learns (lr 0)."""

from __future__ import annotations

import json

import pytest
import torch

from trainwise.registry import audit

FLOW = ("undertrained", "good", "never_learns")  # v1, v2 (shown not worse than v1), v3 (shown worse than v2)


def _history(cli, name):
    code, out, err = cli("history", name, "--json")
    assert code == 0, err
    return json.loads(out)


def test_promote_refuse_force_rollback_history(store, runs, cli):
    for i, key in enumerate(FLOW, 1):
        code, out, err = cli("register", runs(key), "--name", "tab", "--json")
        assert code == 0 and json.loads(out)["version"] == str(i), err
    assert cli("promote", "tab", "1", "--alias", "champion")[0] == 0  # first holder: nothing to beat
    code, out, err = cli("promote", "tab", "2", "--alias", "champion", "--reason", "more steps")
    assert code == 0, err
    code, out, err = cli("promote", "tab", "3", "--check")
    assert code == 1 and "gate failed" in out and "nothing changed" in out  # a dry run records nothing
    code, out, err = cli("promote", "tab", "3", "--alias", "champion")
    assert code == 1 and "accuracy dropped" in err and "--force" in err  # refused with the failing rule
    code, out, err = cli("promote", "tab", "3", "--force")
    assert code == 2 and "--reason" in err  # an override needs a reason
    code, out, err = cli("promote", "tab", "3", "--force", "--reason", "hotfix for incident 42")
    assert code == 0 and "force" in out
    code, out, err = cli("rollback", "tab", "--alias", "champion")
    assert code == 0 and "v3 -> v2" in out
    code, out, err = cli("rollback", "tab")
    assert code == 0 and "v2 -> v1" in out  # a second rollback goes further back, not forward to v3

    h = _history(cli, "tab")
    assert h["problems"] == []
    steps = [(e["action"], e["from_version"], e["to_version"], e["verdict"]) for e in h["entries"]]
    assert steps == [
        ("promote", "", "1", "no-baseline"),
        ("promote", "1", "2", "passed"),
        ("refused", "2", "3", "failed"),
        ("force", "2", "3", "overridden (failed)"),
        ("rollback", "3", "2", "not-gated"),
        ("rollback", "2", "1", "not-gated"),
    ]
    forced = h["entries"][3]
    assert forced["reason"] == "hotfix for incident 42" and forced["who"] == "tester"
    import mlflow.artifacts
    from mlflow import MlflowClient

    from trainwise.registry.lineage import canonical_sha256

    evidence = mlflow.artifacts.load_dict(f"runs:/{forced['run_id']}/evidence.json")
    assert canonical_sha256(evidence) == forced["evidence_sha256"]
    assert (evidence["baseline_version"], evidence["candidate_version"], evidence["comparison"]["passed"]) == (
        "2",
        "3",
        False,
    )

    # --at answers with the holder at each point: just before each entry, and at it
    expected_after = ["1", "2", "2", "3", "2", "1"]
    holder = None
    for e, after in zip(h["entries"], expected_after, strict=True):
        for at_us, want in ((e["when_us"] - 1, holder), (e["when_us"], after)):
            code, out, err = cli("history", "tab", "--json", "--at", audit.iso(at_us))
            assert json.loads(out)["aliases"] == {"champion": want}, (e["seq"], at_us)
        holder = after
    code, out, err = cli("history", "tab", "--at", h["entries"][1]["when"])  # ISO form, text output
    assert code == 0 and "tab@champion" in out and ": v2" in out

    # the MLflow alias equals the last recorded move
    assert MlflowClient(store).get_registered_model("tab").aliases == {"champion": 1}


def test_refused_promotion_leaves_alias(store, runs, cli):
    from mlflow import MlflowClient

    assert cli("register", runs("good"), "--name", "tab2")[0] == 0
    assert cli("register", runs("never_learns"), "--name", "tab2")[0] == 0
    assert cli("promote", "tab2", "1", "--alias", "prod")[0] == 0
    assert cli("promote", "tab2", "2", "--alias", "prod")[0] == 1
    assert MlflowClient(store).get_registered_model("tab2").aliases == {"prod": 1}
    assert cli("promote", "tab2", "1", "--alias", "prod")[1].endswith("nothing to do\n")


def test_alias_load_is_bit_identical(store, runs):
    from trainwise.config import load_config
    from trainwise.registry import load_model_by_alias, promote, register_run
    from trainwise.rundir import load_model
    from trainwise.workloads.base import get_workload_fn

    run_dir = runs("good")
    trained, _ = load_model(run_dir)  # the model as the trainer saved it in the run directory
    mv = register_run(run_dir, "tab3")
    promote("tab3", mv.version, "champion")
    loaded, meta = load_model_by_alias("tab3", "champion")
    x = get_workload_fn("tabular")(load_config(run_dir / "config.toml")).test.inputs
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))
    record = {k: meta["registry"][k] for k in ("name", "version", "alias", "tracking_uri")}
    assert record == {"name": "tab3", "version": str(mv.version), "alias": "champion", "tracking_uri": store}
    assert meta["registry"]["model_files"] == json.loads(
        mv.tags["trainwise.model_files"]
    )  # what loading checked the files against
    assert set(meta["registry"]["model_files"]) == {
        "model.json",
        "weights.safetensors",
        "reference.parquet",
        "reference_profile.json",  # the monitor's profile of the reference, sealed with it
    }


def test_tampered_artifact_refuses_to_load(store, runs, cli):
    from trainwise.errors import DataError
    from trainwise.registry import load_model_by_alias, promote, register_run
    from trainwise.registry.store import get_client
    from trainwise.registry.versions import download_version

    mv = register_run(runs("good"), "tab4")
    promote("tab4", mv.version, "champion")
    weights = download_version(get_client(store), mv) / "weights.safetensors"  # the stored artifact itself
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match="modified or corrupted"):
        load_model_by_alias("tab4", "champion")
    assert cli("card", "tab4", mv.version)[0] == 0  # the card still reads (it reads model.json, not weights)


def test_audit_trail_detects_edits(store, runs):
    from trainwise.registry import promote, register_run
    from trainwise.registry.store import get_client

    for key in ("undertrained", "good"):
        register_run(runs(key), "tab5")
    promote("tab5", "1", "champion")
    promote("tab5", "2", "champion", reason="r", force=True)
    client = get_client(store)
    entries = audit.read_entries(client, "tab5")
    assert audit.check_chain(entries) == []
    client.set_tag(entries[0]["run_id"], audit.PREFIX + "to_version", "2")  # rewrite history in the UI/API
    problems = audit.check_chain(audit.read_entries(client, "tab5"))
    assert any("edited" in p for p in problems)
    client.set_registered_model_alias("tab5", "champion", "1")  # moved in the MLflow UI, not recorded
    assert audit.check_aliases(audit.read_entries(client, "tab5"), client.get_registered_model("tab5").aliases) == [
        "alias champion is v1 in MLflow but the last recorded move set v2 (moved outside trainwise?)"
    ]
