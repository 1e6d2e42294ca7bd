"""Mergeable profiles (trainwise.monitor.sketch) and the statistics computed from them (binned.py)."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from trainwise.errors import DataError
from trainwise.monitor.binned import BinnedColumn, ks_binned, wasserstein_binned
from trainwise.monitor.sketch import merge_profiles, profile_layout, profile_partition

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from monitor_data import make_mixed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _numeric_equal(a: dict, b: dict) -> None:
    for key in ("edges", "counts", "bin_min", "bin_max", "count", "n_missing", "min", "max"):  # exact
        assert a[key] == b[key], key
    assert a["mean"] == pytest.approx(b["mean"], rel=1e-12, abs=1e-12)
    assert a["m2"] == pytest.approx(b["m2"], rel=1e-9)
    np.testing.assert_allclose(a["bin_sum"], b["bin_sum"], rtol=1e-12, atol=1e-9)


def test_profile_of_a_file_equals_the_merge_of_its_split_parts(tmp_path):
    frame = make_mixed(30_000, seed=3)
    path = tmp_path / "table.parquet"
    frame.to_parquet(path, row_group_size=7_000)  # 5 row groups of unequal content
    layout = profile_layout(frame.sample(5_000, random_state=0), n_bins=200)
    whole = profile_partition(pq.read_table(path), layout)
    parts = [profile_partition(pq.ParquetFile(path).read_row_group(i), layout) for i in range(5)]
    uneven = [profile_partition(frame.iloc[a:b], layout) for a, b in ((0, 1), (1, 12_345), (12_345, 30_000))]
    for merged in (
        merge_profiles(parts),
        merge_profiles(uneven),
        merge_profiles([merge_profiles(parts[:2]), *parts[2:]]),
    ):
        assert merged["n_rows"] == whole["n_rows"] == 30_000
        for name, col in whole["columns"].items():
            if col["kind"] == "numeric":
                _numeric_equal(merged["columns"][name], col)
            else:
                assert merged["columns"][name] == col
        assert merged["sample"] == whole["sample"]  # the bottom-k hash sample does not depend on the split
    # plain JSON: survives a round trip unchanged
    assert json.loads(json.dumps(whole)) == whole


def test_moments_and_counts_match_numpy_and_pandas():
    frame = make_mixed(5_000, seed=1)
    profile = profile_partition(frame, profile_layout(frame))
    col = profile["columns"]["num_missing"]
    values = frame["num_missing"].dropna().to_numpy()
    assert col["count"] == len(values) and col["n_missing"] == frame["num_missing"].isna().sum()
    assert col["mean"] == pytest.approx(values.mean()) and col["m2"] == pytest.approx(values.var() * len(values))
    assert (col["min"], col["max"]) == (values.min(), values.max())
    assert sum(col["counts"]) == len(values)
    assert profile["columns"]["cat_12"]["counts"] == frame["cat_12"].value_counts().to_dict()


def test_profile_partition_accepts_arrow_batches_tables_and_pandas():
    frame = make_mixed(2_000, seed=2)
    layout = profile_layout(frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    from_pandas = profile_partition(frame, layout)
    assert profile_partition(table, layout) == from_pandas
    assert profile_partition(table.to_batches()[0], layout)["columns"] == from_pandas["columns"]
    with pytest.raises(DataError, match="expected a pandas DataFrame or a pyarrow Table/RecordBatch"):
        profile_partition(frame.to_numpy(), layout)


CASES = {
    "normal, no drift": lambda rng: (rng.normal(size=20_000), rng.normal(size=3_000)),
    "normal, shifted": lambda rng: (rng.normal(size=20_000), rng.normal(0.1, 1, size=5_000)),
    "heavy tails": lambda rng: (rng.standard_t(2, size=20_000), rng.standard_t(2, size=2_000) * 1.2),
    "integers with ties": lambda rng: (rng.poisson(3, 20_000).astype(float), rng.poisson(3.2, 4_000).astype(float)),
    "small window": lambda rng: (rng.lognormal(size=2_000), rng.lognormal(size=60)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n_bins", [50, 1000])
def test_binned_ks_and_wasserstein_bracket_scipy(case, n_bins):
    """D_binned <= scipy's D <= D_binned + bound, and |W1 - binned W1| <= its bound."""
    ref, cur = CASES[case](np.random.default_rng(7))
    layout = profile_layout(pd.DataFrame({"x": ref}), n_bins=n_bins)
    r = BinnedColumn(profile_partition(pd.DataFrame({"x": ref}), layout)["columns"]["x"])
    c = BinnedColumn(profile_partition(pd.DataFrame({"x": cur}), layout)["columns"]["x"])
    d, bound = ks_binned(r, c)
    exact = stats.ks_2samp(ref, cur).statistic
    assert d - 1e-12 <= exact <= d + bound + 1e-12
    assert bound <= r.mass.max() + 1e-12  # never more than the largest reference bin mass
    w1, w1_bound = wasserstein_binned(r, c)
    assert abs(w1 - stats.wasserstein_distance(ref, cur)) <= w1_bound + 1e-9
    if case == "integers with ties":  # one value per bin: exact
        assert bound == 0 and d == pytest.approx(exact)
        assert w1 == pytest.approx(stats.wasserstein_distance(ref, cur))


def test_profiles_of_different_schemas_are_refused_naming_the_columns():
    a = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    b = pd.DataFrame({"x": ["1", "2"], "d": [1.0, 2.0]})
    pa_, pb = profile_partition(a, profile_layout(a)), profile_partition(b, profile_layout(b))
    with pytest.raises(
        DataError,
        match=r"different schemas.*only in the first: \['c'\].*only in the other: \['d'\].*"
        r"numeric in one and categorical in the other: \['x'\]",
    ):
        merge_profiles([pa_, pb])
    other_edges = profile_partition(a.assign(x=[5.0, 9.0]), profile_layout(a.assign(x=[5.0, 9.0])))
    with pytest.raises(DataError, match="column 'x' have different bin edges"):
        merge_profiles([pa_, other_edges])


def test_a_numeric_column_arriving_as_text_is_named():
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match="column 'x' is numeric in the reference but text here"):
        profile_partition(pd.DataFrame({"x": ["1", "2"]}), profile_layout(ref))


def test_docs_spark_and_ray_examples_are_valid_python():
    text = (ROOT / "docs" / "monitor.md").read_text()
    section = text[text.index("## Streaming profiles") :]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    joined = "\n".join(blocks)
    assert "profile_partition" in joined and "mapPartitions" in joined and "map_batches" in joined
    for block in blocks:
        ast.parse(block)
