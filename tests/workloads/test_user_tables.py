"""A user's table at the door: missing-value markers, imputation equal to scikit-learn's, continuous
targets refused, `data check` reporting what `train` will do, and slices that fit the user's file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.tables import churn_table, write_churn_csv
from trainwise.cli import main
from trainwise.config import load_config
from trainwise.errors import DataError
from trainwise.rundir import read_json
from trainwise.workloads.base import get_workload_fn
from trainwise.workloads.columns import looks_continuous
from trainwise.workloads.tabular import apply_preprocessing, fit_preprocessing
from trainwise.workloads.user import read_table

ROOT = Path(__file__).resolve().parents[2]
RECIPE = (
    "[train]\nsteps = 3\nthreads = 1\nmicro_batch_size = 64\nglobal_batch_size = 64\n[log]\nprogress = false\nmlflow "
    "= false\n"
)


def train_cli(capsys, tmp_path, *sets: str, recipe: Path | None = None, run_name: str = "run"):
    if recipe is None:
        recipe = tmp_path / "recipe.toml"
        recipe.write_text(RECIPE)
    run = tmp_path / run_name
    argv = ["train", str(recipe), *[a for s in sets for a in ("--set", s)], "--run-dir", str(run)]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err, run


@pytest.mark.parametrize("marker", ["?", "-", "n/a", "NA", "", " ", "null", "missing"])
def test_markers_in_a_numeric_column_are_read_as_missing(tmp_path, marker):
    path = tmp_path / "customers.csv"
    written = write_churn_csv(path, n_missing=5, marker=marker)
    col = read_table(path)["monthly_charges"]
    assert pd.api.types.is_float_dtype(col), col.dtype
    assert int(col.isna().sum()) == 5
    numbers = written["monthly_charges"] != marker
    np.testing.assert_allclose(
        col[numbers].to_numpy(), written.loc[numbers, "monthly_charges"].astype(float).to_numpy()
    )


def test_question_marks_train_as_a_numeric_column_with_a_warning(tmp_path, capsys):
    path = tmp_path / "customers.csv"
    write_churn_csv(path, n_missing=7)
    code, _, err, run = train_cli(
        capsys, tmp_path, "workload.name=file", f"workload.path={path}", "workload.target=churned"
    )
    assert code == 0, err
    assert "numeric column 'monthly_charges': 7 cells read as missing ('?' x7)" in err
    info = read_json(run / "model" / "model.json")["info"]
    assert info["features"][:4] == ["tenure_months", "monthly_charges", "support_calls", "monthly_charges=<missing>"]
    assert len(info["features"]) == 4 + 3 + 3  # plus contract and payment one-hot: not 500 categories of charges
    # the fill is the median of the training rows' observed charges, computed here from the raw file
    cfg = load_config(None, ["workload.name=file", f"workload.path={path}", "workload.target=churned"])
    train_ids = get_workload_fn("file")(cfg).train.ids
    raw = pd.read_csv(path, keep_default_na=False)["monthly_charges"].iloc[train_ids]
    expected = float(np.median(pd.to_numeric(raw, errors="coerce").dropna()))
    entry = next(c for c in info["preprocessing"]["numeric"] if c["name"] == "monthly_charges")
    assert entry["fill"] == pytest.approx(expected) and entry["indicator"] is True
    assert {"name": "monthly_charges", "type": "numeric", "nullable": True} in info["input_schema"]


def test_imputation_equals_sklearn():
    frame = churn_table(800, seed=3, n_missing=40)
    frame["monthly_charges"] = pd.to_numeric(frame["monthly_charges"], errors="coerce")
    frame["support_calls"] = (
        frame["support_calls"].astype(float).where(np.arange(len(frame)) % 37 != 0)
    )  # a second imputed column
    numeric, categorical, impute = (
        ["tenure_months", "monthly_charges", "support_calls"],
        ["contract", "payment"],
        ["monthly_charges", "support_calls"],
    )
    train, test = frame.iloc[:600], frame.iloc[600:]
    prep = fit_preprocessing(train, numeric, categorical, impute)
    reference = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("ind", MissingIndicator(features="all"), impute),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    ).fit(train)
    np.testing.assert_allclose(
        apply_preprocessing(prep, test), reference.transform(test).astype(np.float64), rtol=1e-5, atol=1e-6
    )


def test_a_missing_number_where_training_had_none_is_refused():
    frame = churn_table(200, n_missing=0)
    frame["monthly_charges"] = frame["monthly_charges"].astype(float)
    prep = fit_preprocessing(frame, ["tenure_months", "monthly_charges"], ["contract"])
    rows = frame.head(2).assign(tenure_months=[None, 5])
    with pytest.raises(DataError, match="column 'tenure_months' has missing or non-numeric values"):
        apply_preprocessing(prep, rows)


def test_mostly_numeric_column_with_text_warns_and_can_be_forced(tmp_path, capsys):
    frame = churn_table(400, n_missing=0)
    frame.loc[[5, 9], "monthly_charges"] = "see notes"
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    code, _, err, run = train_cli(
        capsys, tmp_path, "workload.name=file", f"workload.path={path}", "workload.target=churned"
    )
    assert code == 0, err
    assert "column 'monthly_charges' is 99.5% numbers but also holds text ('see notes' x2)" in err
    assert "workload.column_types = ['monthly_charges:numeric']" in err
    code, _, err, run = train_cli(
        capsys,
        tmp_path,
        "workload.name=file",
        f"workload.path={path}",
        "workload.target=churned",
        "workload.column_types=monthly_charges:numeric",
        run_name="forced",
    )
    assert code == 0, err
    assert "numeric column 'monthly_charges': 2 cells read as missing ('see notes' x2)" in err
    assert "monthly_charges=<missing>" in read_json(run / "model" / "model.json")["info"]["features"]


def continuous_float(f):
    return f.assign(churned=np.round(np.random.default_rng(0).normal(50, 10, len(f)), 2))


def many_integer_classes(f):
    return f.assign(churned=np.arange(len(f)) % 200)


@pytest.mark.parametrize(
    "edit, why", [(continuous_float, "not whole numbers"), (many_integer_classes, "rows per class on average")]
)
def test_a_continuous_target_is_refused_before_any_run_directory(tmp_path, capsys, edit, why):
    path = tmp_path / "customers.csv"
    edit(churn_table(600)).to_csv(path, index=False)
    code, _, err, run = train_cli(
        capsys, tmp_path, "workload.name=file", f"workload.path={path}", "workload.target=churned"
    )
    assert code == 2 and "Traceback" not in err, err
    assert "target column 'churned' looks continuous" in err and why in err and "regression is not supported yet" in err
    assert len(err.strip().splitlines()) == 1 and not run.exists()


def test_continuous_target_rule_boundaries():
    assert looks_continuous(pd.Series(np.arange(20) + 0.5)) is None  # 20 distinct values: classes
    assert "not whole numbers" in looks_continuous(pd.Series(np.arange(21) + 0.5))
    assert looks_continuous(pd.Series(np.repeat(np.arange(21), 10))) is None  # 10 rows per class
    assert "rows per class" in looks_continuous(pd.Series(np.repeat(np.arange(21), 9)))


def test_a_forced_categorical_target_trains_on_its_values(tmp_path):
    path = tmp_path / "customers.csv"
    many_integer_classes(churn_table(600)).to_csv(path, index=False)
    cfg = load_config(
        None,
        [
            "workload.name=file",
            f"workload.path={path}",
            "workload.target=churned",
            "workload.column_types=churned:categorical",
        ],
    )
    assert len(get_workload_fn("file")(cfg).info["classes"]) == 200


def test_data_check_reports_the_markers(tmp_path, capsys):
    path = tmp_path / "customers.csv"
    write_churn_csv(path, n_missing=7)
    assert main(["data", "check", str(path), "--target", "churned", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    missing = report["findings"]["missing"]
    assert missing["found"] and missing["cells"] == 7 and missing["markers"] == {"monthly_charges": "'?' x7"}
    assert main(["data", "check", str(path), "--fail-on", "missing"]) == 1
    assert "FOUND 7 missing cells in monthly_charges ('?' x7)" in capsys.readouterr().out


def test_data_check_of_a_file_config_reports_the_raw_missing_cells(tmp_path, capsys):
    path = tmp_path / "customers.csv"
    write_churn_csv(path, n_missing=7)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[workload]\nname = "file"\npath = "{path}"\ntarget = "churned"\n')
    assert main(["data", "check", str(recipe), "--json", "-"]) == 0
    missing = json.loads(capsys.readouterr().out)["findings"]["missing"]
    assert missing["found"] and missing["markers"] == {"monthly_charges": "'?' x7"}


def test_the_tabular_recipe_evaluates_a_users_file_by_its_own_slices(tmp_path, capsys):
    path = tmp_path / "customers.csv"
    write_churn_csv(path)
    code, _, err, run = train_cli(
        capsys,
        tmp_path,
        "workload.name=file",
        f"workload.path={path}",
        "workload.target=churned",
        "train.steps=5",
        "train.threads=1",
        "log.progress=false",
        "log.mlflow=false",
        recipe=ROOT / "configs" / "tabular.toml",
    )
    assert code == 0, err
    assert main(["evaluate", str(run), "--bootstrap", "20", "--no-robustness"]) == 0, capsys.readouterr().err
    assert set(read_json(run / "eval" / "metrics.json")["slices"]) == {"contract", "payment"}
    # a slice asked for by name that the data lacks is still a clear error
    assert main(["evaluate", str(run), "--slices", "region", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "slice column(s) region do not exist" in err and "Traceback" not in err and not (tmp_path / "ev").exists()


def test_parquet_nulls_in_numeric_columns_are_imputed(tmp_path, capsys):
    frame = churn_table(400, n_missing=9)
    frame["monthly_charges"] = pd.to_numeric(frame["monthly_charges"], errors="coerce")  # float NaN
    frame["support_calls"] = pd.array(
        np.where(np.arange(400) % 40 == 0, None, frame["support_calls"]), dtype="Int64"
    )  # nullable ints
    frame.index = np.zeros(400, dtype=int)  # a repeated index label must not confuse the reading
    frame.to_parquet(tmp_path / "customers.parquet")
    code, _, err, run = train_cli(
        capsys,
        tmp_path,
        "workload.name=file",
        f"workload.path={tmp_path / 'customers.parquet'}",
        "workload.target=churned",
    )
    assert code == 0, err
    assert "numeric column 'monthly_charges': 9 cells read as missing (null x9)" in err
    assert "numeric column 'support_calls': 10 cells read as missing (null x10)" in err
    features = read_json(run / "model" / "model.json")["info"]["features"]
    assert {"monthly_charges=<missing>", "support_calls=<missing>"} <= set(features)


def test_the_tabular_recipe_leaves_slices_to_the_workload():
    """The built-in table's slices come from the workload itself, so the recipe fits any table."""
    cfg = load_config(ROOT / "configs" / "tabular.toml", ["model.n_layers=1", "model.d_model=8"])
    assert cfg.eval.slices == []
    assert get_workload_fn("tabular")(cfg).info["slice_columns"] == ["education", "occupation"]
