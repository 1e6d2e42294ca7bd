"""`tabular`: an MLP classifier on a real table, and the preprocessing that travels with it.

The built-in table is the Fair (1969 Redbook survey) data that ships inside statsmodels: 6,366
women, the target is whether they reported any extramarital affair, and education and occupation
are categorical columns usable as evaluation slices. Preprocessing (standard scaling of numeric
columns, one-hot encoding of categorical ones, and for numeric columns with missing values a
training-median fill plus a missing-indicator feature) is fitted on the training split only, then
exported as plain JSON so that serving applies exactly the same transform without pickle.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

from trainwise.errors import DataError
from trainwise.workloads.base import Split, Workload, register_model, register_workload
from trainwise.workloads.inputs import table_input


class TabularMLP(nn.Module):
    def __init__(self, n_features: int, n_classes: int, d_hidden: int, n_layers: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(n_layers):
            layers.append(MLPBlock(width, d_hidden, dropout))
            width = d_hidden
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, n_classes)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class MLPBlock(nn.Module):
    """Linear -> LayerNorm -> GELU -> Dropout; the unit of activation checkpointing."""

    def __init__(self, d_in: int, d_out: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(nn.functional.gelu(self.norm(self.fc(x))))


@register_model("tabular_mlp")
def build_tabular_mlp(
    n_features: int, n_classes: int, d_hidden: int, n_layers: int, dropout: float = 0.0
) -> TabularMLP:
    return TabularMLP(n_features, n_classes, d_hidden, n_layers, dropout)


# ---------------------------------------------------------------------------------------------
# preprocessing as JSON


def fit_preprocessing(train: pd.DataFrame, numeric: list[str], categorical: list[str], impute: list[str] = ()) -> dict:
    """Fit scaling and one-hot encoding on the training rows; return the learned parameters as JSON.

    Numeric columns in `impute` (those with missing values anywhere in the table) get their
    training median as `fill`, applied before scaling, plus a 0/1 missing-indicator feature: the
    same as scikit-learn's SimpleImputer(strategy="median") -> StandardScaler, with
    MissingIndicator for the indicators (tested).
    """
    prep: dict = {"numeric": [], "categorical": []}
    if numeric:
        values = train[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, copy=True)
        fills = {}
        for j, col in enumerate(numeric):
            if col in impute:
                observed = values[~np.isnan(values[:, j]), j]
                if len(observed) == 0:
                    raise DataError(
                        f"numeric column {col!r} has no values in the training rows; nothing to impute from"
                    )
                fills[col] = float(np.median(observed))
                values[:, j] = np.where(np.isnan(values[:, j]), fills[col], values[:, j])
        scaler = StandardScaler().fit(values)
        for col, mean, scale in zip(numeric, scaler.mean_, scaler.scale_, strict=True):
            entry = {"name": col, "mean": float(mean), "scale": float(scale)}
            prep["numeric"].append(entry | ({"fill": fills[col], "indicator": True} if col in fills else {}))
    if categorical:
        enc = OneHotEncoder(handle_unknown="ignore").fit(train[categorical].astype(str))
        for col, cats in zip(categorical, enc.categories_, strict=True):
            prep["categorical"].append({"name": col, "categories": [str(c) for c in cats]})
    return prep


def feature_names(prep: dict) -> list[str]:
    names = [c["name"] for c in prep["numeric"]]
    names += [f"{c['name']}=<missing>" for c in prep["numeric"] if c.get("indicator")]
    for c in prep["categorical"]:
        names += [f"{c['name']}={v}" for v in c["categories"]]
    return names


def apply_preprocessing(prep: dict, frame: pd.DataFrame) -> np.ndarray:
    """Transform raw rows with fitted parameters; equals scikit-learn's transform (tested).

    Features: scaled numeric columns, then the missing indicators of imputed columns, then the
    one-hot columns. Unknown categories encode as all zeros, as OneHotEncoder(handle_unknown="ignore")
    does. A missing number in a column that was not imputed in training is refused: the model
    never saw one there.
    """
    missing = [c["name"] for c in prep["numeric"] + prep["categorical"] if c["name"] not in frame.columns]
    if missing:
        raise DataError(f"input rows lack the columns {', '.join(missing)} that the model was trained on")
    cols, indicators = [], []
    for c in prep["numeric"]:
        values = pd.to_numeric(frame[c["name"]], errors="coerce").to_numpy(dtype=np.float64)
        absent = np.isnan(values)
        if "fill" in c:
            values = np.where(absent, c["fill"], values)
        elif absent.any():
            raise DataError(f"column {c['name']!r} has missing or non-numeric values; expected numbers")
        if c.get("indicator"):
            indicators.append(absent[:, None].astype(np.float64))
        cols.append(((values - c["mean"]) / c["scale"])[:, None])
    cols += indicators
    for c in prep["categorical"]:
        values = frame[c["name"]].astype(str).to_numpy()
        cols.append((values[:, None] == np.asarray(c["categories"])[None, :]).astype(np.float64))
    return np.concatenate(cols, axis=1).astype(np.float32) if cols else np.zeros((len(frame), 0), np.float32)


def split_rows(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    return {
        "test": np.sort(perm[:n_test]),
        "val": np.sort(perm[n_test : n_test + n_val]),
        "train": np.sort(perm[n_test + n_val :]),
    }


def table_workload(
    cfg,
    frame: pd.DataFrame,
    target: str,
    numeric: list[str],
    categorical: list[str],
    name: str,
    slice_columns: list[str],
) -> Workload:
    """A tabular classification workload from a DataFrame (the built-in table or a user's file)."""
    y_raw = frame[target]
    classes = sorted(y_raw.astype(str).unique())
    if len(classes) < 2:
        raise DataError(
            f"target column {target!r} has a single value ({classes[0]!r}); a classifier needs at least two classes"
        )
    class_index = {c: i for i, c in enumerate(classes)}
    y = y_raw.astype(str).map(class_index).to_numpy()
    rows = split_rows(len(frame), cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.split_seed)
    impute = [c for c in numeric if frame[c].isna().any()]  # anywhere in the table: val/test rows are transformed too
    prep = fit_preprocessing(frame.iloc[rows["train"]], numeric, categorical, impute)
    splits = {}
    for split, idx in rows.items():
        part = frame.iloc[idx]
        x = torch.from_numpy(apply_preprocessing(prep, part))
        meta = part[slice_columns].astype(str).reset_index(drop=True) if slice_columns else None
        splits[split] = Split(inputs=x, targets=torch.from_numpy(y[idx]).long(), ids=idx.astype(np.int64), meta=meta)
    kwargs = dict(
        n_features=splits["train"].inputs.shape[1],
        n_classes=len(classes),
        d_hidden=cfg.model.d_model,
        n_layers=cfg.model.n_layers,
        dropout=cfg.model.dropout,
    )
    schema = [{"name": c, "type": "numeric"} | ({"nullable": True} if c in impute else {}) for c in numeric] + [
        {"name": c["name"], "type": "categorical", "categories": c["categories"]} for c in prep["categorical"]
    ]
    return Workload(
        name=name,
        task="classification",
        model=build_tabular_mlp(**kwargs),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        spec={"builder": "tabular_mlp", "kwargs": kwargs},
        info={
            "classes": classes,
            "target": target,
            "preprocessing": prep,
            "features": feature_names(prep),
            "input_schema": schema,
            "slice_columns": slice_columns,
        },
        block_classes=(MLPBlock,),
        input=table_input(schema, prep),
    )


# Codes documented in statsmodels.datasets.fair (Fair, 1978, "A Theory of Extramarital Affairs").
_EDUCATION = {
    9: "grade school",
    12: "high school",
    14: "some college",
    16: "college graduate",
    17: "some graduate school",
    20: "advanced degree",
}
_OCCUPATION = {
    1: "student",
    2: "farming/semi-skilled/unskilled",
    3: "white collar",
    4: "teacher/nurse/writer/technician/skilled",
    5: "managerial/business",
    6: "professional with advanced degree",
}


def load_fair() -> pd.DataFrame:
    """The Fair affairs table from statsmodels, with readable categories and a binary target."""
    # lazy: statsmodels takes seconds to import; only the built-in Fair data set comes from it
    import statsmodels.api as sm

    d = sm.datasets.fair.load_pandas().data.copy()
    d["education"] = d.pop("educ").astype(int).map(_EDUCATION)
    d["occupation"] = d["occupation"].astype(int).map(_OCCUPATION)
    d["occupation_husb"] = d["occupation_husb"].astype(int).map(_OCCUPATION)
    d["had_affair"] = np.where(d.pop("affairs") > 0, "yes", "no")
    return d


@register_workload("tabular")
def tabular_workload(cfg) -> Workload:
    frame = load_fair()
    numeric = ["rate_marriage", "age", "yrs_married", "children", "religious"]
    categorical = ["education", "occupation", "occupation_husb"]
    return table_workload(cfg, frame, "had_affair", numeric, categorical, "tabular", ["education", "occupation"])
