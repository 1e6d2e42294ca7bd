"""drift.json and a self-contained report.html (matplotlib PNGs embedded as data URIs, no network)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from trainwise.rundir import write_atomic, write_json


def _png(fig) -> str:
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _distribution_figure(columns: list[dict]) -> str | None:
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    shown = [c for c in columns if c.get("plot")]
    if not shown:
        return None
    n_cols = 4
    n_rows = (len(shown) + n_cols - 1) // n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.3 * n_rows), squeeze=False)
    for ax, c in zip(axes.flat, shown, strict=False):  # the grid's last row may have spare axes
        p = c["plot"]
        if "edges" in p:
            edges = p["edges"]
            ax.stairs(p["ref"], edges, label="reference", color="tab:blue")
            ax.stairs(p["cur"], edges, label="current", color="tab:red")
        else:
            x = range(len(p["categories"]))
            ax.bar([i - 0.2 for i in x], p["ref"], width=0.4, color="tab:blue", label="reference")
            ax.bar([i + 0.2 for i in x], p["cur"], width=0.4, color="tab:red", label="current")
            ax.set_xticks(list(x), [s[:8] for s in p["categories"]], rotation=60, fontsize=6)
        mark = " DRIFT" if c["drift"] else ""
        ax.set_title(
            f"{c['name']}: {c['effect_measure']}={c['effect_size']:.3f}{mark}",
            fontsize=8,
            color="tab:red" if c["drift"] else "black",
        )
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    # Fixed spacing: tight_layout measured every tick label and took seconds on 20 panels.
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.35 / n_rows, bottom=0.6 / n_rows, hspace=0.9, wspace=0.25)
    return _png(fig)


def _timeline_figure(windows: list[dict]) -> str | None:
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    if len(windows) < 2:
        return None
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True)
    x = list(range(len(windows)))
    ax1.bar(
        x,
        [w["n_drifted_columns"] for w in windows],
        color=[
            "tab:red" if w["dataset_drift"] else ("tab:gray" if w["dataset_drift"] is None else "tab:green")
            for w in windows
        ],
    )
    ax1.set_ylabel("drifted columns")
    est = [(i, w["estimated_accuracy"]) for i, w in enumerate(windows) if w.get("estimated_accuracy") is not None]
    if est:
        ax2.plot([i for i, _ in est], [a for _, a in est], marker="o", label="estimated accuracy (label-free)")
        ax2.fill_between(
            [i for i, _ in est],
            [windows[i]["estimated_ci"][0] for i, _ in est],
            [windows[i]["estimated_ci"][1] for i, _ in est],
            alpha=0.2,
        )
    real = [(i, w["realised_accuracy"]) for i, w in enumerate(windows) if w.get("realised_accuracy") is not None]
    if real:
        ax2.plot([i for i, _ in real], [a for _, a in real], marker="s", label="realised accuracy")
    ax2.set_ylabel("accuracy")
    ax2.set_xticks(x, [w["start"][:16] for w in windows], rotation=45, fontsize=6)
    if est or real:
        ax2.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _table(columns: list[dict]) -> str:
    names = ("column", "type", "test", "effect", "threshold", "p-value", "PSI", "status", "drift")
    head = "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    rows = []
    for c in columns:
        fmt = lambda v: "" if v is None else f"{v:.4g}"  # noqa: E731
        style = ' style="background:#fdd"' if c["drift"] else ""
        rows.append(
            f"<tr{style}><td>{html.escape(str(c['name']))}</td><td>{c['type']}</td><td>{c['test']}</td>"
            f"<td>{c['effect_measure']} {fmt(c.get('effect_size'))}</td><td>{fmt(c.get('threshold'))}</td>"
            f"<td>{fmt(c.get('p_value'))}</td><td>{fmt(c.get('psi'))}</td><td>{c.get('status', '')}</td>"
            f"<td>{'yes' if c['drift'] else 'no'}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(result: dict) -> str:
    cols = result["columns"] + ([result["multivariate"]] if result.get("multivariate") else [])
    parts = [
        f"<h1>trainwise drift report</h1><p><b>{html.escape(result['verdict'])}</b></p>",
        f"<p>reference: {html.escape((result.get('reference') or {}).get('source', 'given'))}; "
        f"reference rows: {result['n_reference']}, current rows: {result['n_current']}. A column drifts when its "
        "effect size exceeds the larger of a practical minimum and the 95th percentile of no-drift windows of "
        "this size, and its test is significant after Benjamini-Hochberg correction.</p>",
        _table(cols),
    ]
    if result.get("prediction_columns"):
        parts += [f"<h2>Prediction drift: {result['prediction_drift']}</h2>", _table(result["prediction_columns"])]
    perf = result.get("performance")
    if perf:
        parts.append(f"<h2>Performance</h2><pre>{html.escape(_perf_text(perf))}</pre>")
    for title, img in (
        ("Timeline", _timeline_figure(result.get("windows", []))),
        (
            "Reference vs current, per column",
            _distribution_figure(result["columns"] + result.get("prediction_columns", [])),
        ),
    ):
        if img:
            parts.append(f'<h2>{title}</h2><img src="{img}" alt="{title}">')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
    )
    head = f'<meta charset="utf-8"><title>trainwise drift report</title><style>{style}</style>'
    return f"<!doctype html><html><head>{head}</head><body>{''.join(parts)}</body></html>"


def _perf_text(perf: dict) -> str:
    lines = []
    real = perf.get("realised")
    if real:
        c = real["current"]
        lines.append(f"realised accuracy {c['accuracy']:.4f} (95% CI {c['ci_low']:.4f}-{c['ci_high']:.4f}, n={c['n']})")
    est = perf.get("estimated")
    if est:
        lines.append(
            f"estimated accuracy {est['accuracy']:.4f} (95% interval {est['ci_low']:.4f}-{est['ci_high']:.4f}), "
            f"estimated drop {perf['estimated_accuracy_drop']:+.4f}"
        )
    return "\n".join(lines)


def write_outputs(result: dict, out_dir: str | Path, html_report: bool = True) -> None:
    """drift.json (plot data left out) and report.html in `out_dir`, both written atomically."""
    out = Path(out_dir)
    write_json(out / "drift.json", strip_plots(result))
    if html_report:
        write_atomic(out / "report.html", render_html(result))


def strip_plots(result: dict) -> dict:
    """The result without the per-column histogram data (kept for the HTML only)."""
    clean = dict(result)
    for key in ("columns", "prediction_columns"):
        clean[key] = [{k: v for k, v in c.items() if k != "plot"} for c in result.get(key, [])]
    return clean
