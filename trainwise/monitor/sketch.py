"""Mergeable column profiles: what the monitor needs of a table, computed one partition at a time.

A profile is plain JSON. Numeric columns: counts in fixed bins whose edges come from the
reference's quantiles (with each bin's min, max and sum), exact count, missing count, min, max,
mean and M2 (the sum of squared deviations; merged with Chan et al.'s pairwise update).
Categorical columns: exact counts per value. Plus a row sample for the multivariate test and the
performance calibration: the rows with the `sample_rows` smallest hashes of their content (a
bottom-k sample), which the merge keeps too, so the sample of a table is the same however it was partitioned.

The profile of a table equals the merge of its partitions' profiles (counts, min, max exactly;
mean, M2 and bin sums to float rounding). That is what lets Spark or Ray Data profile partitions in
parallel (docs/monitor.md):

    layout = profile_layout(reference_sample)            # bin edges, from the reference
    parts = [profile_partition(batch, layout) for batch in batches]
    profile = merge_profiles(parts)

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", None]})
>>> layout = profile_layout(frame)
>>> whole = profile_partition(frame, layout)
>>> merged = merge_profiles([profile_partition(frame[:1], layout), profile_partition(frame[1:], layout)])
>>> merged["columns"]["c"]["counts"] == whole["columns"]["c"]["counts"] == {"a": 2, "b": 1}
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trainwise.errors import DataError
from trainwise.monitor.profile import infer_kind

FORMAT = "trainwise-profile/1"
N_BINS = 1000  # KS from binned CDFs is off by at most the largest bin mass: about 1/N_BINS of the reference
SAMPLE_ROWS = 2000
_HASH_SEED = np.uint64(0x9E3779B97F4A7C15)


def profile_layout(data, n_bins: int = N_BINS, column_types: dict | None = None) -> dict:
    """The bins every partition is profiled on: per column its kind and, for numeric ones, the edges.

    Edges are the reference's distinct values when it has at most `n_bins` of them (the binned CDF is
    then exact at every reference value), else its quantiles at i / n_bins (values that occur in it).
    `data` is a pandas DataFrame or a pyarrow Table/RecordBatch (a sample of the reference will do).
    """

    frame = _to_pandas(data)
    types = column_types or {}
    layout = {}
    for name in frame.columns:
        kind = infer_kind(frame[name], types.get(name))
        if kind == "numeric":
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
            values = np.unique(values[~np.isnan(values)])
            if len(values) > n_bins:
                values = np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins, method="inverted_cdf"))
            layout[str(name)] = {"kind": "numeric", "edges": values.tolist()}
        else:
            layout[str(name)] = {"kind": "categorical"}
    return layout


def profile_partition(
    data, layout: dict, sample_rows: int = SAMPLE_ROWS, carry: tuple = ("label",), max_hash: int | None = None
) -> dict:
    """The profile (plain JSON) of one partition: a pandas DataFrame or a pyarrow Table/RecordBatch.

    The row sample holds the layout's columns plus those of `carry` the data has (the label, which
    the performance estimate calibrates on; it is not hashed, so labels arriving later keep the
    sample). A column of the layout that the partition lacks is an error naming it. `max_hash`: rows
    hashed above it are left out of the sample (a caller merging into a full sample knows they cannot enter).
    """

    table = _to_arrow(data)
    missing = [c for c in layout if c not in table.column_names]
    if missing:
        raise DataError(f"the data lacks the column(s) {', '.join(missing)} of the profile layout; expected them")
    columns = {}
    for name, spec in layout.items():
        col = table.column(name)
        if spec["kind"] == "numeric":
            if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
                found = "text" if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) else col.type
                raise DataError(f"column {name!r} is numeric in the reference but {found} here; expected numbers")
            columns[name] = _numeric(col, np.asarray(spec["edges"], dtype=np.float64))
        else:
            columns[name] = _categorical(col)
    carried = [c for c in carry if c in table.column_names and c not in layout]
    return {
        "format": FORMAT,
        "n_rows": table.num_rows,
        "columns": columns,
        "sample": _sample(table, list(layout), carried, sample_rows, max_hash),
    }


def _numeric(col, edges: np.ndarray) -> dict:
    values = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False) if len(col) else np.zeros(0)
    if col.null_count:
        values = np.where(col.is_null().to_numpy(zero_copy_only=False), np.nan, values)
    values = values[~np.isnan(values)]
    n = len(values)
    # bins (-inf, e0], (e0, e1], ..., (e_last, inf): the binned CDF is exact at every edge
    bins = np.searchsorted(edges, values, "left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    # each bin's own min and max: within-bin interpolation between them is exact for a bin holding one value
    bin_min = np.full(len(edges) + 1, np.inf)
    bin_max = np.full(len(edges) + 1, -np.inf)
    np.minimum.at(bin_min, bins, values)
    np.maximum.at(bin_max, bins, values)
    mean = float(values.mean()) if n else 0.0
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "bin_min": [float(v) if c else None for v, c in zip(bin_min, counts, strict=True)],
        "bin_max": [float(v) if c else None for v, c in zip(bin_max, counts, strict=True)],
        "bin_sum": np.bincount(bins, weights=values, minlength=len(edges) + 1).tolist(),
        "count": n,
        "n_missing": len(col) - n,
        "min": float(values.min()) if n else None,
        "max": float(values.max()) if n else None,
        "mean": mean,
        "m2": float(np.sum((values - mean) ** 2)) if n else 0.0,
    }


def _categorical(col) -> dict:
    counts = pc.value_counts(col.drop_null() if hasattr(col, "drop_null") else col)
    values = counts.field("values").to_pylist()
    found = counts.field("counts").to_pylist()
    out: dict[str, int] = {}
    for v, k in zip(values, found, strict=True):
        if v is not None:
            key = str(v)  # values that print the same (1 and "1") are one category, as in the in-memory path
            out[key] = out.get(key, 0) + int(k)
    return {"kind": "categorical", "counts": out, "n_missing": len(col) - sum(out.values())}


def row_hashes(table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's content in `columns` (same row, same hash, in any partition)."""

    h = np.full(table.num_rows, _HASH_SEED, dtype=np.uint64)
    for name in columns:
        col = table.column(name)
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if _is_numeric(col.type):  # a number is its float64 bits (a missing value a fixed word)
            values = col.to_numpy(zero_copy_only=False).astype(np.float64)
            bits = values.view(np.uint64).copy()
            bits[np.isnan(values)] = np.uint64(1)
        else:  # a text value is pandas' hash of its string, computed once per distinct value
            if not pa.types.is_dictionary(col.type):
                col = pc.dictionary_encode(col.cast(pa.string()) if not pa.types.is_null(col.type) else col)
            words = _string_words(col.dictionary)
            index = col.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            bits = np.where(index < 0, np.uint64(1), words[np.maximum(index, 0)] if len(words) else np.uint64(1))
        h = _mix(h ^ bits.astype(np.uint64))
    return h


def _is_numeric(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _string_words(dictionary) -> np.ndarray:
    values = np.asarray([str(v) for v in dictionary.to_pylist()], dtype=object)
    return pd.util.hash_array(values).astype(np.uint64) if len(values) else np.zeros(0, dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the bits so the smallest hashes are a uniform sample."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _sample(table, columns: list[str], carried: list[str], k: int, max_hash: int | None) -> dict:
    hashes = row_hashes(table, columns)
    candidates = np.arange(len(hashes)) if max_hash is None else np.flatnonzero(hashes <= np.uint64(max_hash))
    take = candidates[np.argsort(hashes[candidates], kind="stable")[:k]]
    rows = table.select(columns + carried).take(take).to_pydict()
    return {"size": k, "hashes": hashes[take].tolist(), "rows": {c: _jsonable(v) for c, v in rows.items()}}


def _jsonable(values: list) -> list:
    return [None if isinstance(v, float) and np.isnan(v) else v for v in values]


# ----------------------------------------------------------------------------------------------
def merge_profiles(profiles: list[dict]) -> dict:
    """One profile from the profiles of a table's partitions (the same layout); errors name the mismatch."""
    if not profiles:
        raise DataError("no profiles to merge; expected at least one")
    first = profiles[0]
    for other in profiles[1:]:
        _check_same_schema(first, other)
    columns = {name: _merge_column([p["columns"][name] for p in profiles]) for name in first["columns"]}
    return {
        "format": FORMAT,
        "n_rows": sum(p["n_rows"] for p in profiles),
        "columns": columns,
        "sample": _merge_samples([p["sample"] for p in profiles]),
    }


def _check_same_schema(a: dict, b: dict) -> None:
    for p in (a, b):
        if p.get("format") != FORMAT:
            raise DataError(f"a profile has format {p.get('format')!r}; expected {FORMAT!r}")
    kinds_a = {n: c["kind"] for n, c in a["columns"].items()}
    kinds_b = {n: c["kind"] for n, c in b["columns"].items()}
    if kinds_a != kinds_b:
        only_a = sorted(set(kinds_a) - set(kinds_b))
        only_b = sorted(set(kinds_b) - set(kinds_a))
        kind = sorted(n for n in set(kinds_a) & set(kinds_b) if kinds_a[n] != kinds_b[n])
        raise DataError(
            "profiles with different schemas cannot be merged: "
            f"only in the first: {only_a or 'none'}; only in the other: {only_b or 'none'}; "
            f"numeric in one and categorical in the other: {kind or 'none'}; expected the same columns and kinds"
        )
    for name, col in a["columns"].items():
        if col["kind"] == "numeric" and col["edges"] != b["columns"][name]["edges"]:
            raise DataError(
                f"profiles of column {name!r} have different bin edges; expected partitions profiled with one layout"
            )


def _merge_column(parts: list[dict]) -> dict:
    if parts[0]["kind"] == "categorical":
        counts: dict[str, int] = {}
        for p in parts:
            for key, k in p["counts"].items():
                counts[key] = counts.get(key, 0) + k
        return {"kind": "categorical", "counts": counts, "n_missing": sum(p["n_missing"] for p in parts)}
    out = dict(parts[0], counts=list(parts[0]["counts"]))
    for p in parts[1:]:
        out["counts"] = [x + y for x, y in zip(out["counts"], p["counts"], strict=True)]
        out["bin_sum"] = [x + y for x, y in zip(out["bin_sum"], p["bin_sum"], strict=True)]
        out["bin_min"] = [_pick(min, x, y) for x, y in zip(out["bin_min"], p["bin_min"], strict=True)]
        out["bin_max"] = [_pick(max, x, y) for x, y in zip(out["bin_max"], p["bin_max"], strict=True)]
        n_a, n_b = out["count"], p["count"]
        n = n_a + n_b
        if n_b:
            delta = p["mean"] - out["mean"]
            out["m2"] = out["m2"] + p["m2"] + delta * delta * n_a * n_b / n
            out["mean"] = out["mean"] + delta * n_b / n
            out["min"] = p["min"] if out["min"] is None else min(out["min"], p["min"])
            out["max"] = p["max"] if out["max"] is None else max(out["max"], p["max"])
        out["count"] = n
        out["n_missing"] += p["n_missing"]
    return out


def _pick(best, x, y):
    return y if x is None else x if y is None else best(x, y)


def _merge_samples(samples: list[dict]) -> dict:
    k = min(s["size"] for s in samples)
    hashes = np.concatenate([np.asarray(s["hashes"], dtype=np.uint64) for s in samples])
    take = np.argsort(hashes, kind="stable")[:k]
    names = [c for c in samples[0]["rows"] if all(c in s["rows"] for s in samples)]
    rows = {c: [v for s in samples for v in s["rows"][c]] for c in names}
    return {"size": k, "hashes": hashes[take].tolist(), "rows": {c: [rows[c][i] for i in take] for c in names}}


def sample_frame(profile: dict) -> pd.DataFrame:
    """The profile's row sample as a DataFrame (numeric columns as float64)."""
    frame = pd.DataFrame(profile["sample"]["rows"])
    for name, col in profile["columns"].items():
        if col["kind"] == "numeric" and name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    return frame


# ----------------------------------------------------------------------------------------------
def _to_arrow(data):
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise DataError(
        f"cannot profile a {type(data).__name__}; expected a pandas DataFrame or a pyarrow Table/RecordBatch"
    )


def _to_pandas(data) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else _to_arrow(data).to_pandas()
