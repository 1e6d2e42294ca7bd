"""report.html: a self-contained evaluation report (figures embedded as base64 PNG, no network).

Plotting stays here, apart from the metric functions (sklearn's split between `calibration_curve`
and `CalibrationDisplay`).
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}.small{color:#a60}"
    ".bad{color:#b00}"
)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    # lazy: matplotlib, as in the figures below
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{(row_class or [""] * len(rows))[i]}">' + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>"
        for i, r in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def reliability_figure(rel: dict) -> str:
    """Accuracy vs confidence per equal-width bin, with the per-bin counts underneath."""
    # lazy: matplotlib takes seconds to import; only the HTML report draws (Agg before pyplot)
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    n = rel["n_bins"]
    centers = (np.arange(n) + 0.5) / n
    acc = np.array([np.nan if v is None else v for v in rel["accuracy"]])
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centers, np.nan_to_num(acc), width=1 / n, edgecolor="k", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    axc.bar(centers, rel["count"], width=1 / n, edgecolor="k", color="gray")
    for c, k in zip(centers, rel["count"], strict=True):
        if k:
            axc.text(c, k, str(k), ha="center", va="bottom", fontsize=6)
    axc.set_xlabel("confidence (top-class probability)")
    axc.set_ylabel("count")
    return _png(fig)


def position_loss_figure(pred_df: pd.DataFrame) -> str:
    # lazy: matplotlib takes seconds to import; only the HTML report draws (Agg before pyplot)
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    mean = np.mean(np.stack(pred_df["position_loss"].to_numpy()).astype(np.float64), axis=0)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.arange(len(mean)), mean)
    ax.set_xlabel("position in window")
    ax.set_ylabel("loss (nats/byte)")
    return _png(fig)


def slices_html(slices: dict, metric_names: list[str]) -> str:
    parts = []
    for col, rows in slices.items():
        header = ["value", "n"] + [f"{m} [95% CI]" for m in metric_names]
        body, classes = [], []
        for r in rows:
            cells = [r["value"], r["n"]]
            for m in metric_names:
                v, ci = r["metrics"].get(m), r["ci"].get(m)
                cells.append("—" if v is None else f"{v:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
            body.append(cells)
            classes.append("small" if r["small"] else "")
        parts.append(f"<h3>{html.escape(col)}</h3>" + _table(header, body, classes))
    note = (
        '<p class="small">Slices in this colour have fewer examples than the minimum count: their numbers are '
        "noisy.</p>"
        if parts
        else "<p>No slices.</p>"
    )
    return "".join(parts) + note


def robustness_html(rob: dict) -> str:
    rows = []
    for name, r in rob.items():
        if name == "skipped":  # no perturbation fits the model's input: say why instead of numbers
            rows.append(["perturbations", f"skipped: {r}", "", ""])
            continue
        if "note" in r or "skipped" in r:
            rows.append([name, r.get("note") or f"skipped: {r['skipped']}", "", ""])
            continue
        for k, v in r.items():
            if k != "n":
                rows.append([name, k, v["value"], v["delta"]])
    return _table(["perturbation", "metric", "value", "change from clean"], rows)


# the headline metrics the report's first table shows, per task
LM_KEYS = ["n", "loss", "bits_per_byte", "next_byte_accuracy"]
CLASSIFICATION_KEYS = [
    "n",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "f1_micro",
    "precision_macro",
    "recall_macro",
    "roc_auc",
    "log_loss",
    "brier",
    "ece",
    "ece_l2",
    "ece_max",
    "ece_equal_mass",
]


def render_report(metrics: dict, pred_df: pd.DataFrame, title: str) -> str:
    lm = metrics["task"] == "lm"
    keys = LM_KEYS if lm else CLASSIFICATION_KEYS
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        _table(["metric", "value"], [[k, metrics.get(k)] for k in keys]),
    ]
    if lm:
        parts += (
            ["<h2>Loss by position</h2>", position_loss_figure(pred_df)]
            if "position_loss" in pred_df.columns and len(pred_df)
            else []
        )
        parts += [
            "<h2>Source-file groups</h2>",
            slices_html({"group": metrics.get("groups", [])}, ["loss", "bits_per_byte", "next_byte_accuracy"]),
        ]
        slice_metrics = ["loss", "next_byte_accuracy"]
    else:
        classes = metrics["classes"]
        parts += [
            "<h2>Per class</h2>",
            _table(
                ["class", "precision", "recall", "f1", "support"],
                [[c, *metrics["per_class"][c].values()] for c in classes],
            ),
        ]
        parts += ["<h2>Calibration</h2>", reliability_figure(metrics["reliability"])]
        cm = metrics["confusion_matrix"]
        parts += [
            "<h2>Confusion matrix (rows: true, columns: predicted)</h2>",
            _table([""] + classes, [[c, *row] for c, row in zip(classes, cm, strict=True)]),
        ]
        slice_metrics = ["accuracy", "f1_macro", "log_loss", "ece"]
    parts += ["<h2>Slices</h2>", slices_html(metrics.get("slices", {}), slice_metrics)]
    if "robustness" in metrics:
        parts += ["<h2>Robustness</h2>", robustness_html(metrics["robustness"])]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
