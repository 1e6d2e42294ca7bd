"""report.md and a self-contained report.html (figures as base64 PNG data URIs: no network)."""

from __future__ import annotations

import html

from trainwise.evaluate.report import CSS, _png

MIB = 2**20
HEADER = ["variant", "status", "median step ms (min-max)", "step time vs control (95% CI)", "tokens/s", "MFU", "peak act MiB", "peak mem MiB",
          "val loss", "quality", "time to target s", "skipped", "alarms"]


def _f(v, spec=".1f", scale=1.0) -> str:
    return "—" if v is None else format(v / scale, spec)


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        spread = f"{_f(r.get('median_step_ms'))} ({_f(r.get('step_ms_min'))}-{_f(r.get('step_ms_max'))})" if r.get("median_step_ms") else "—"
        out.append([r["label"] + (" [control]" if r["is_control"] else ""), r["status"], spread, _ratio(r.get("speed_ratio_vs_control")),
                    _f(r.get("tokens_per_s"), ",.0f"), r.get("mfu_note") or _f(r.get("mfu"), ".2%"), _f(r.get("peak_activation_bytes"), ".1f", MIB), _f(r.get("peak_memory_bytes"), ".1f", MIB),
                    _f(r.get("final_val_loss"), ".4f"), r.get("quality_verdict", ""), _f(r.get("time_to_target_s"), ".1f"),
                    str(r.get("skipped_steps", "—")), str(len(r.get("alarms") or []))])
    return out


def _ratio(s: dict | None) -> str:
    """A paired speed ratio from the timing phase, or why none is quoted."""
    if not s:
        return "—"
    return f"{s['median']:.2f}x ({s['ci95'][0]:.2f}-{s['ci95'][1]:.2f})" if s["reliable"] else "unreliable"


def timing_line(meta: dict, rec: dict) -> str:
    """How speeds were measured, and the overhead over plain PyTorch (or why it is not quoted)."""
    t = meta.get("timing")
    how = (f"speeds from {t['rounds']} interleaved timing rounds x {t['steps_per_round']} steps after training"
           + (f"; {t['unreliable_reason']}" if t.get("unreliable_reason") else "")) if t else "speeds from the training runs (no timing phase)"
    overhead = rec.get("trainwise_overhead_vs_plain_pytorch")
    if overhead is not None:
        ci = rec.get("trainwise_overhead_ci95")
        how += f". trainwise's step time vs a plain PyTorch loop: {overhead:+.1%}" + (f" (95% CI {ci[0]:+.1%} to {ci[1]:+.1%})" if ci else "")
    elif rec.get("trainwise_overhead_note"):
        note = rec["trainwise_overhead_note"]
        how += ". trainwise's step time vs a plain PyTorch loop: " + ("not quoted (timings unreliable)" if t and note == t.get("unreliable_reason") else note)
    return how


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def speed_memory_figure(rows: list[dict]) -> str:
    plt = _plt()
    pts = [r for r in rows if r.get("tokens_per_s") and r.get("peak_memory_bytes")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xy = [(r["peak_memory_bytes"] / MIB, r["tokens_per_s"]) for r in pts]
    for (x, y), r in zip(xy, pts):
        ax.scatter(x, y, color="k" if r["is_control"] else ("tab:red" if r["quality_verdict"] == "fail" else "tab:blue"))
        ax.annotate(r["label"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(xy)
    if front:
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "g--", label="Pareto front (less memory, more speed)")
        ax.legend(fontsize=7)
    ax.set_xlabel("peak tracked memory (MiB)")
    ax.set_ylabel("tokens/s")
    ax.set_title("speed vs memory (red: failed the quality gate)", fontsize=9)
    return _png(fig)


def loss_figure(rows: list[dict]) -> str:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        c = r.get("curves") or {}
        style = dict(color="k", lw=2.5, zorder=5) if r["is_control"] else dict(lw=1, alpha=0.8)
        if c.get("train"):
            ax1.plot(*zip(*c["train"]), label=r["label"], **style)
        if c.get("val"):
            ax2.plot(*zip(*c["val"]), marker="o", ms=3, label=r["label"], **style)
    for ax, what in ((ax1, "training loss"), (ax2, "validation loss")):
        ax.set_xlabel("step")
        ax.set_ylabel(what)
        ax.set_title(f"{what} (black: the fp32 control)", fontsize=9)
    ax2.legend(fontsize=6)
    return _png(fig)


def speedup_figure(rows: list[dict]) -> str:
    plt = _plt()
    control = next((r for r in rows if r["is_control"] and r.get("tokens_per_s")), None)
    pts = [r for r in rows if r.get("tokens_per_s")]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(pts) + 1))
    if control:
        vals = [r["tokens_per_s"] / control["tokens_per_s"] for r in pts]
        colors = ["k" if r["is_control"] else ("tab:red" if r["quality_verdict"] == "fail" else "tab:green") for r in pts]
        ax.barh([r["label"] for r in pts], vals, color=colors)
        ax.axvline(1.0, color="k", ls=":")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("throughput / fp32 control")
    ax.set_title("speed-up over fp32 (red: failed the quality gate)", fontsize=9)
    return _png(fig)


def render_markdown(rows: list[dict], rec: dict, meta: dict) -> str:
    from trainwise.bench.recommend import summary_line

    lines = [f"# trainwise bench: {meta.get('config')}", "", f"device: {meta.get('device')}; peak matmul GFLOP/s measured here: {meta.get('matmul_gflops')}",
             f"target validation loss: {meta.get('target_val_loss'):.4f}; quality tolerance {meta.get('tolerance'):.0%} of the control's loss", "",
             f"**{summary_line(rec)}**", "", timing_line(meta, rec), ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(rows)]
    lines += ["", "## Not recommended", ""] + [f"- {r['reason']}" for r in rec.get("rejected", [])]
    return "\n".join(lines) + "\n"


def render_html(rows: list[dict], rec: dict, meta: dict) -> str:
    from trainwise.bench.recommend import summary_line

    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(rows))
    rejected = "".join(f"<li>{html.escape(r['reason'])}</li>" for r in rec.get("rejected", []))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>trainwise bench</title><style>{CSS}</style></head><body>
<h1>trainwise bench</h1>
<p>config {html.escape(str(meta.get('config')))} on {html.escape(str(meta.get('device')))}; measured peak matmul GFLOP/s {html.escape(str(meta.get('matmul_gflops')))};
target validation loss {meta.get('target_val_loss'):.4f}; tolerance {meta.get('tolerance'):.0%}</p>
<h2>Recommendation</h2><p><b>{html.escape(summary_line(rec))}</b></p>
<p>{html.escape(timing_line(meta, rec))}</p>
<h2>Variants</h2><table><tr>{head}</tr>{body}</table>
<h2>Speed vs memory</h2>{speed_memory_figure(rows)}
<h2>Speed-up over fp32</h2>{speedup_figure(rows)}
<h2>Loss curves over the fp32 control</h2>{loss_figure(rows)}
<h2>Not recommended</h2><ul>{rejected}</ul>
</body></html>
"""
