"""Built-in and user workloads: real data, deterministic splits, preprocessing equal to sklearn's, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from trainwise.cli import main
from trainwise.config import load_config
from trainwise.rundir import load_model, save_model
from trainwise.workloads.base import fingerprint_split, get_workload_fn
from trainwise.workloads.lm import _split_of, load_stdlib_splits, stdlib_files
from trainwise.workloads.tabular import apply_preprocessing, fit_preprocessing, load_fair


def test_stdlib_corpus_is_real_and_split_by_file():
    files = stdlib_files()
    assert len(files) > 300 and sum(p.stat().st_size for _, p in files) > 5_000_000
    splits = {rel: _split_of(rel, 0.1, 0.1, 0) for rel, _ in files}
    assert set(splits.values()) == {"train", "val", "test"}
    assert splits == {rel: _split_of(rel, 0.1, 0.1, 0) for rel, _ in files}  # deterministic
    a = load_stdlib_splits(32, 0.1, 0.1, 0, max_bytes=300_000)
    b = load_stdlib_splits(32, 0.1, 0.1, 0, max_bytes=300_000)
    assert fingerprint_split(a["train"]) == fingerprint_split(b["train"])
    x, y = a["train"].inputs, a["train"].targets
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are inputs shifted by one byte


def test_fair_table_is_real():
    d = load_fair()
    assert len(d) == 6366 and {"education", "occupation", "had_affair"} <= set(d.columns)
    assert set(d["had_affair"]) == {"yes", "no"}


def test_preprocessing_equals_sklearn():
    d = load_fair()
    numeric, categorical = ["age", "yrs_married", "children"], ["education", "occupation"]
    train, test = d.iloc[:5000], d.iloc[5000:]
    prep = fit_preprocessing(train, numeric, categorical)
    reference = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    reference.fit(train)
    np.testing.assert_allclose(apply_preprocessing(prep, test), reference.transform(test), rtol=1e-5, atol=1e-6)
    unseen = test.head(3).assign(education="kindergarten")
    np.testing.assert_allclose(apply_preprocessing(prep, unseen), reference.transform(unseen), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tabular", "vision"])
def test_workload_model_round_trips_through_model_dir(name, tmp_path):
    cfg = load_config(None, [f"workload.name={name}", "model.n_layers=1", "model.d_model=8"])
    w = get_workload_fn(name)(cfg)
    save_model(w.model, tmp_path / "model", {"spec": w.spec, "task": w.task, "info": w.info, "workload": name})
    model, meta = load_model(tmp_path)
    x = w.test.inputs[:5]
    torch.testing.assert_close(model(x), w.model.eval()(x), rtol=0, atol=0)
    assert meta["info"] == w.info


def write_csv(tmp_path, frame):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def user_table(n=400):
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x, "city": rng.choice(["a", "b", "c"], size=n), "label": np.where(x > 0, "pos", "neg")})


def test_file_workload_trains_from_csv_and_parquet(tmp_path, capsys):
    frame = user_table()
    csv = write_csv(tmp_path, frame)
    frame.to_parquet(tmp_path / "data.parquet")
    for path in (csv, tmp_path / "data.parquet"):
        run = tmp_path / f"run-{path.suffix[1:]}"
        code = main(
            [
                "train",
                str(write_recipe(tmp_path)),
                "--set",
                "workload.name=file",
                "--set",
                f"workload.path={path}",
                "--set",
                "workload.target=label",
                "--set",
                "model.d_model=8",
                "--set",
                "train.steps=40",
                "--run-dir",
                str(run),
            ]
        )
        assert code == 0, capsys.readouterr().err
        model, meta = load_model(run)
        assert meta["info"]["classes"] == ["neg", "pos"] and "city=a" in meta["info"]["features"]
    capsys.readouterr()


def write_recipe(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[train]\nsteps = 3\nthreads = 1\n[log]\nprogress = false\nmlflow = false\n")
    return recipe


def cli_train(capsys, tmp_path, *sets):
    argv = ["train"]
    for s in sets:
        argv += ["--set", s]
    run = tmp_path / "run"
    code = main(argv[:1] + [str(write_recipe(tmp_path))] + argv[1:] + ["--run-dir", str(run)])
    return code, capsys.readouterr().err, run


@pytest.mark.parametrize(
    "frame_edit, sets, message",
    [
        (None, ["workload.target=nope"], "target column 'nope' is absent"),
        (lambda f: f.assign(label="same"), ["workload.target=label"], "has a single value"),
        (
            lambda f: f.assign(x=np.where(np.arange(len(f)) == 3, np.inf, f["x"])),
            ["workload.target=label"],
            "numeric columns x hold infinite values",
        ),
        (
            lambda f: f.assign(
                label=np.where(np.arange(len(f)) == 3, "?", f["label"]),
                x=f["x"].astype(str).where(np.arange(len(f)) != 3, "?"),
            ),
            ["workload.target=x"],
            "target column 'x' has 1 missing values ('?' x1)",
        ),
    ],
)
def test_bad_csv_gives_one_error_and_no_run_dir(tmp_path, capsys, frame_edit, sets, message):
    frame = user_table()
    frame = frame_edit(frame) if frame_edit else frame
    path = write_csv(tmp_path, frame)
    code, err, run = cli_train(capsys, tmp_path, "workload.name=file", f"workload.path={path}", *sets)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not run.exists()


def test_missing_and_non_table_file(tmp_path, capsys):
    code, err, run = cli_train(
        capsys, tmp_path, "workload.name=file", f"workload.path={tmp_path / 'none.csv'}", "workload.target=y"
    )
    assert code == 2 and "none.csv does not exist" in err and not run.exists()
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"\x00\x01 not parquet")
    code, err, run = cli_train(capsys, tmp_path, "workload.name=file", f"workload.path={junk}", "workload.target=y")
    assert code == 2 and "could not be read as a table" in err and not run.exists()


@pytest.mark.parametrize(
    "entry, message",
    [
        ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
        ("tests.helpers:no_such_function", "has no function 'no_such_function'"),
        ("tests.helpers:not_a_workload", "returned dict; expected a trainwise.workloads.base.Workload"),
        ("not-an-entry", "expected 'package.module:function'"),
    ],
)
def test_bad_entry_point(tmp_path, capsys, entry, message):
    code, err, run = cli_train(capsys, tmp_path, "workload.name=entry", f"workload.entry={entry}")
    assert code == 2 and message in err, err
    assert not run.exists()


def test_entry_workload_trains(tmp_path, capsys):
    code, err, run = cli_train(
        capsys,
        tmp_path,
        "workload.name=entry",
        "workload.entry=tests.helpers:overflow_workload",
        "train.micro_batch_size=32",
        "train.global_batch_size=32",
    )
    assert code == 0, err
    model, meta = load_model(run)
    assert meta["spec"]["builder"] == "tests.helpers:Overflow"
