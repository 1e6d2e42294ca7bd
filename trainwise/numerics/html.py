"""numerics.html: a self-contained page (inline PNG) with a layers x formats heat map of the
matmul error, worst layers first (by loss impact), and the FP8 preflight."""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np


def heatmap_png(report: dict) -> bytes:
    # lazy: matplotlib takes seconds to import; only the HTML report draws (Agg before pyplot)
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    layers = report["ranking"]
    cols = list(next(iter(report["layers"].values()))["errors"]) if layers else []
    grid = np.array(
        [[max(report["layers"][n]["errors"].get(c, {}).values(), default=float("nan")) for c in cols] for n in layers],
        dtype=float,
    )
    shown = np.log10(np.clip(np.where(np.isfinite(grid), grid, 10.0), 1e-6, 10.0))  # overflow (inf) shown as 10
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 3, 0.3 * len(layers) + 1.5))
    im = ax.imshow(shown, aspect="auto", cmap="magma_r", vmin=-5, vmax=1)
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right")
    ax.set_yticks(range(len(layers)), layers)
    for i in range(len(layers)):
        for j in range(len(cols)):
            v = grid[i, j]
            ax.text(
                j,
                i,
                "inf" if not math.isfinite(v) else f"{v:.1e}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if shown[i, j] > -2 else "black",
            )
    fig.colorbar(im, ax=ax, label="log10 relative matmul error vs fp32")
    ax.set_title(f"worst layers first ({report['recipe']})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


def render_html(report: dict) -> str:
    png = base64.b64encode(heatmap_png(report)).decode()
    rows = []
    for name in report["ranking"]:
        r = report["layers"][name]
        a, g = r["stats"].get("activations", {}), r["stats"].get("gradients", {})
        rows.append(
            f"<tr><td>{r['rank']}</td><td>{html.escape(name)}</td><td>{r['type']}</td><td>{_fmt(r.get('loss_impact'))}</td><td>{_fmt(r['score'])}</td>"
            f"<td>{_fmt(a.get('amax'))}</td><td>{_fmt(a.get('min_nonzero'))}</td><td>{_fmt(g.get('amax'))}</td><td>{_fmt(g.get('min_nonzero'))}</td>"
            f"<td>{html.escape('; '.join(r['unsafe_reasons']) or 'safe')}</td></tr>"
        )
    li = report.get("loss_impact", {})
    pf = report["preflight"]
    pf_rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{'x'.join(map(str, v['gemm']))}</td>"
        f"<td>{html.escape(v['speed']['why'])}</td><td>{'yes' if v['safe'] else 'no'}</td>"
        f"<td>{'fp8' if v['use_fp8'] else 'bf16'}</td></tr>"
        for n, v in pf["layers"].items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>trainwise numerics</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}</style></head><body>
<h1>Numerics: {html.escape(str(report.get("config", "")))}</h1>
<p>{report["steps"]} fp32 training steps measured. Ranking: layers beyond fp16's range first, then by loss \
impact: what the layer's
{report["recipe"]} forward matmul (operands {html.escape(str(report["recipe_formats"]))}) costs in loss inside \
the converted model
(fp32 loss {_fmt(li.get("loss_fp32"))}, every FP8-eligible layer converted {_fmt(li.get("loss_converted"))}, \
gap {_fmt(li.get("gap"))};
method: {html.escape(str(li.get("method", "")))}). Error method: {html.escape(report["error_method"])}.</p>
<h2>FP8 preflight ({html.escape(pf["gpu"])}): {html.escape(pf["verdict"])}</h2>
<p>Speed verdicts are roofline estimates for the named GPU class, not measurements.</p>
<table><tr><th>layer</th><th>GEMM MxKxN</th><th>speed</th><th>safe</th><th>choice</th></tr>{pf_rows}</table>
<h2>Matmul error per layer and format (worst first)</h2>
<img alt="heat map" src="data:image/png;base64,{png}">
<h2>Layers, worst first</h2>
<table><tr><th>rank</th><th>layer</th><th>type</th><th>loss impact</th><th>matmul error</th><th>act amax</th>\
<th>act min&gt;0</th><th>grad amax</th><th>grad min&gt;0</th><th>verdict</th></tr>{"".join(rows)}</table>
<p>Full per-format overflow/underflow shares and percentiles: numerics.json.</p>
</body></html>
"""
