"""The bench report's figures, as base64 PNG data URIs (no network): speed against memory with the
Pareto front, the speed-up over fp32, the loss curves over the fp32 control."""

from __future__ import annotations

from trainwise.evaluate.report import _png

MIB = 2**20
VERDICT_COLOR = {"fail": "tab:red", "inconclusive": "tab:orange"}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (lower memory, higher speed), sorted by memory."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _plt():
    # lazy: matplotlib takes seconds to import, and only the HTML report draws; Agg is chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and only needed when a figure is drawn
    import matplotlib.pyplot as plt

    return plt


def _caption(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9, transform=ax.transAxes)
    ax.set_axis_off()


def speed_memory_figure(rows: list[dict], unit: str = "tokens", unreliable: str | None = None) -> str:
    plt = _plt()
    pts = [r for r in rows if r.get("tokens_per_s") and r.get("peak_memory_bytes") and not r.get("emulated")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xy = [(r["peak_memory_bytes"] / MIB, r["tokens_per_s"]) for r in pts]
    for (x, y), r in zip(xy, pts, strict=True):
        ax.scatter(x, y, color="k" if r["is_control"] else VERDICT_COLOR.get(r["quality_verdict"], "tab:blue"))
        ax.annotate(r["label"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(xy)
    if front and not unreliable:
        ax.plot(
            [xy[i][0] for i in front], [xy[i][1] for i in front], "g--", label="Pareto front (less memory, more speed)"
        )
        ax.legend(fontsize=7)
    ax.set_xlabel("peak tracked memory (MiB)")
    ax.set_ylabel(f"{unit}/s" + (" (unreliable)" if unreliable else ""))
    title = "speed vs memory (red: failed the quality gate, orange: inconclusive)"
    ax.set_title(
        title + (f"\n{unreliable}: speeds are not evidence" if unreliable else ""), fontsize=8 if unreliable else 9
    )
    return _png(fig)


def speedups(rows: list[dict], source: str) -> list[tuple[dict, float]]:
    """(row, speed-up over the control) from the evidence the recommendation used: the paired
    ratios of the timing phase, or the training runs' throughput; none without evidence."""
    control = next((r for r in rows if r["is_control"]), None)
    if control is None or source == "none":
        return []
    out = []
    for r in rows:
        ratio = (r.get("speed_ratio_vs_control") or {}).get("median")
        if r is control:
            out.append((r, 1.0))
        elif source.startswith("timing") and ratio:
            out.append((r, 1 / ratio))
        elif (
            source.startswith("training")
            and r.get("tokens_per_s")
            and control.get("tokens_per_s")
            and r["kind"] == "trainwise"
            and not r.get("emulated")
        ):
            out.append((r, r["tokens_per_s"] / control["tokens_per_s"]))
    return out


def speedup_figure(rows: list[dict], rec: dict) -> str:
    plt = _plt()
    pts = speedups(rows, rec.get("speed_source") or "none")
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * max(len(pts), 3) + 1))
    if not pts:
        _caption(ax, f"no speed-ups drawn: {rec.get('speed_unreliable') or 'no comparable speeds'}")
        return _png(fig)
    colors = ["k" if r["is_control"] else VERDICT_COLOR.get(r["quality_verdict"], "tab:green") for r, _ in pts]
    ax.barh([r["label"] for r, _ in pts], [v for _, v in pts], color=colors)
    ax.axvline(1.0, color="k", ls=":")
    for i, (_, v) in enumerate(pts):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel(f"speed / fp32 control ({rec.get('speed_source')})")
    ax.set_title("speed-up over fp32 (red: failed the quality gate, orange: inconclusive)", fontsize=9)
    return _png(fig)


def loss_figure(rows: list[dict]) -> str:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        c = r.get("curves") or {}
        style = (
            dict(color="k", lw=2.5, zorder=5)
            if r["is_control"]
            else dict(color="0.5", lw=1.5, ls="--", zorder=4)
            if r.get("kind") == "control-seed"
            else dict(lw=1, alpha=0.8)
        )
        if c.get("train"):
            ax1.plot(*zip(*c["train"], strict=True), label=r["label"], **style)
        if c.get("val"):
            ax2.plot(*zip(*c["val"], strict=True), marker="o", ms=3, label=r["label"], **style)
    for ax, what in ((ax1, "training loss"), (ax2, "validation loss")):
        ax.set_xlabel("step")
        ax.set_ylabel(what)
        ax.set_title(f"{what} (black: the fp32 control; grey dashed: its other seeds)", fontsize=9)
    ax2.legend(fontsize=6)
    return _png(fig)
