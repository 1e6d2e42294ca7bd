"""The training reference: written at the end of training in the log's layout, stored at registration."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from trainwise.config import load_config
from trainwise.errors import DataError
from trainwise.monitor.reference import REFERENCE_FILE, raw_table
from trainwise.rundir import load_model
from trainwise.seal import write_manifest
from trainwise.train.loop import train
from trainwise.workloads.build import build_workload
from trainwise.workloads.inputs import input_spec_of
from trainwise.workloads.tabular import load_fair


def held_out(run_dir):
    """The workload of a run rebuilt from its config: val then test, as the reference takes them."""
    cfg = load_config(run_dir / "config.toml", [])
    w = build_workload(cfg)
    return (
        w,
        np.concatenate([w.val.ids, w.test.ids]),
        torch.cat([w.val.inputs, w.test.inputs]),
        torch.cat([w.val.targets, w.test.targets]),
    )


def test_table_reference_is_what_the_server_would_log(tab_run):
    """Raw source rows of the held-out examples; the served model's own predictions on them; true labels."""
    from trainwise.serve.runtime import load_runtime

    ref = pd.read_parquet(tab_run / "model" / REFERENCE_FILE)
    w, ids, _, targets = held_out(tab_run)
    fair = load_fair().iloc[ids].reset_index(drop=True)
    columns = [c["name"] for c in w.input["columns"]]
    assert list(ref.columns) == [f"in_{c}" for c in columns] + ["prediction", "prob_no", "prob_yes", "label"]
    for c in columns:  # exactly the raw values a client sends (no float32 round trip)
        assert ref[f"in_{c}"].tolist() == fair[c].tolist()
    assert ref["label"].tolist() == np.asarray(w.info["classes"])[targets.numpy()].tolist()
    served = load_runtime(str(tab_run)).predict(fair[columns].to_dict("records"))
    assert ref["prediction"].tolist() == [s["label"] for s in served]
    np.testing.assert_allclose(ref["prob_yes"], [s["probabilities"]["yes"] for s in served], rtol=1e-6)


def test_recovered_table_inputs_are_exact_on_a_grid(tab_run):
    """Without source rows, values are recovered from the float32 features: exact for Fair's grid values."""
    _, meta = load_model(tab_run)
    spec = input_spec_of(meta)
    _, ids, inputs, _ = held_out(tab_run)
    fair = load_fair().iloc[ids].reset_index(drop=True)
    recovered = raw_table(spec, inputs.double().numpy())
    for c in spec["columns"]:
        assert recovered[f"in_{c['name']}"] == fair[c["name"]].tolist(), c["name"]


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    common = [
        "train.steps=2",
        "train.micro_batch_size=8",
        "train.global_batch_size=8",
        "log.progress=false",
        "log.mlflow=false",
        "train.threads=1",
    ]
    vision = train(load_config(None, ["workload.name=vision", "model.d_model=8", *common]), root / "vision").run_dir
    lm = train(
        load_config(None, ["workload.name=lm", "model.n_layers=1", "model.d_model=32", "model.context=32", *common]),
        root / "lm",
    ).run_dir
    return vision, lm


def test_tensor_reference_summarises_each_example(small_runs):
    run = small_runs[0]
    ref = pd.read_parquet(run / "model" / REFERENCE_FILE)
    _, _, inputs, targets = held_out(run)
    x = inputs.double().reshape(len(inputs), -1).numpy()
    np.testing.assert_allclose(ref["in_mean"], x.mean(1))
    np.testing.assert_allclose(ref["in_std"], x.std(1))
    np.testing.assert_allclose(ref["in_max"], x.max(1))
    np.testing.assert_allclose(ref["in_zero_share"], (x == 0).mean(1))
    assert (ref["in_nonfinite_share"] == 0).all() and ref["label"].tolist() == [str(int(t)) for t in targets]
    model, _ = load_model(run)
    with torch.no_grad():
        prob = torch.softmax(model(inputs), -1).numpy()
    np.testing.assert_allclose(ref[[f"prob_{i}" for i in range(10)]].to_numpy(), prob, rtol=1e-5, atol=1e-7)


def test_token_reference_predicts_the_next_byte(small_runs):
    run = small_runs[1]
    ref = pd.read_parquet(run / "model" / REFERENCE_FILE)
    assert list(ref.columns) == ["in_length", "in_distinct_share", "in_high_id_share", "prediction", "label"]
    model, _ = load_model(run)
    _, _, inputs, targets = held_out(run)
    keep = (
        np.sort(np.random.default_rng(0).choice(len(inputs), 256, replace=False))
        if len(inputs) > 256
        else np.arange(len(inputs))
    )
    x = inputs[torch.from_numpy(keep)]
    with torch.no_grad():
        expected = model(x)[:, -1].argmax(-1)
    assert ref["prediction"].tolist() == [str(int(i)) for i in expected]
    assert ref["label"].tolist() == [str(int(t)) for t in targets[torch.from_numpy(keep)][:, -1]]
    assert (ref["in_length"] == 32).all()
    np.testing.assert_allclose(ref["in_distinct_share"], [len(set(r.tolist())) / 32 for r in x])
    np.testing.assert_allclose(ref["in_high_id_share"], (x >= 128).double().mean(1).numpy())


def copy_run(run_dir, dest):
    """A copy of a real run, not yet logged to any store (mlflow.json left behind)."""
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("checkpoints", "mlflow.json"))
    return dest


def test_registration_stores_the_reference_and_refuses_a_tampered_one(store, tab_run, tmp_path):
    from trainwise.registry.store import get_client
    from trainwise.registry.versions import download_reference, register_run

    mv = register_run(copy_run(tab_run, tmp_path / "run"), "ref-model")
    path = download_reference(get_client(), mv)
    pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(tab_run / "model" / REFERENCE_FILE))
    other = pd.read_parquet(path).iloc[:10]
    other.to_parquet(path)  # someone edits the stored reference
    with pytest.raises(DataError, match="does not match the hash recorded at registration"):
        download_reference(get_client(), mv)


def test_a_run_trained_before_references_gets_one_at_registration(store, tab_run, tmp_path):
    from trainwise.registry.store import get_client
    from trainwise.registry.versions import download_reference, register_run

    old = copy_run(tab_run, tmp_path / "old-run")
    (old / "model" / REFERENCE_FILE).unlink()
    write_manifest(old / "model")  # sealed without a reference, as when none could be written at the end of training
    mv = register_run(old, "old-model")
    pd.testing.assert_frame_equal(
        pd.read_parquet(download_reference(get_client(), mv)), pd.read_parquet(tab_run / "model" / REFERENCE_FILE)
    )


def test_the_reference_profile_is_sealed_with_the_model_and_read_by_the_monitor(tab_run):
    """model/reference_profile.json: the monitor's profile of reference.parquet, in the model's manifest."""
    import json

    from trainwise.monitor.check import REFERENCE_PROFILE, frame_profile, reference_profile
    from trainwise.monitor.drift import DriftMonitor
    from trainwise.seal import read_seal

    model_dir = tab_run / "model"
    stored = json.loads((model_dir / REFERENCE_PROFILE).read_text())
    assert REFERENCE_PROFILE in read_seal(model_dir).files
    ref = pd.read_parquet(model_dir / REFERENCE_FILE)
    assert stored == json.loads(json.dumps(frame_profile(ref, DriftMonitor()._tested, "label")))
    assert stored["n_rows"] == len(ref) and set(stored["columns"]) == set(ref.columns)
    assert reference_profile(str(tab_run), DriftMonitor()._tested, "label") == stored  # no raw rows read
    monitor = DriftMonitor(multivariate=False).fit_profile(stored)
    assert monitor.check(ref)["dataset_drift"] is False  # fitted from the profile, the reference does not drift
