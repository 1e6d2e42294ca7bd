"""report.md and a self-contained report.html (figures as base64 PNG data URIs: no network)."""

from __future__ import annotations

import html

from trainwise.evaluate.report import CSS, _png

MIB = 2**20
VERDICT_COLOR = {"fail": "tab:red", "inconclusive": "tab:orange"}


def header(unit: str = "tokens") -> list[str]:
    return ["variant", "status", "median step ms (min-max)", f"{unit}/s", "MFU", "peak act MiB", "peak mem MiB",
            "val loss", "quality", "time to target s", "skipped", "alarms"]


def _f(v, spec=".1f", scale=1.0) -> str:
    return "—" if v is None else format(v / scale, spec)


def _speed_cell(r: dict) -> str:
    if r.get("median_step_ms"):
        return f"{_f(r.get('median_step_ms'))} ({_f(r.get('step_ms_min'))}-{_f(r.get('step_ms_max'))})"
    if r.get("pruned"):
        p = r["pruned"]
        return f"{_f(p['median_step_ms'])} ({p['timed_steps']} step{'s' if p['timed_steps'] != 1 else ''})"
    return "not timed" if r.get("kind") == "control-seed" and r.get("status") == "completed" else "—"


def _quality_cell(r: dict) -> str:
    v = r.get("quality_verdict", "")
    if r.get("quality_upper_rise") is not None:
        return f"{v} (rise {r['quality_lower_rise']:+.1%} to {r['quality_upper_rise']:+.1%}, margin {r['quality_margin_rise']:.1%})"
    return v


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        tag = " [control]" if r["is_control"] else (" [noise floor]" if r.get("kind") == "control-seed" else "")
        out.append([r["label"] + tag, r["status"], _speed_cell(r), _f(r.get("tokens_per_s"), ",.0f"),
                    _f(r.get("mfu"), ".2%"), _f(r.get("peak_activation_bytes"), ".1f", MIB), _f(r.get("peak_memory_bytes"), ".1f", MIB),
                    _f(r.get("final_val_loss"), ".4f"), _quality_cell(r), _f(r.get("time_to_target_s"), ".1f"),
                    str(r.get("skipped_steps", "—")), str(len(r.get("alarms") or []))])
    return out


def floor_lines(meta: dict) -> list[str]:
    """The noise floor and the verdict rule, in words."""
    f = meta.get("noise_floor") or {}
    if not f.get("measured"):
        return [f"noise floor: not measured ({f.get('reason', 'no second seed')}); verdict margin = tolerance only"]
    m, p = f["metric"], f["primary_metric"]
    pm = f["per_metric"]
    seeds = ", ".join(f"{x:.4f}" for x in pm[m]["per_seed"])
    return [f"noise floor: {f['seeds']} seeds of the fp32 control differ by {pm[m]['floor']:.4f} in validation {m} ({seeds}; "
            f"{pm[m]['floor'] / f['control_loss']:.1%} of the control's) and by {pm[p]['floor']:.4f} in {p.replace('_', ' ')}",
            f"verdict margin = tolerance {meta.get('tolerance'):.0%} x control loss + noise floor = {f['tolerance_abs']:.4f} + "
            f"{pm[m]['floor']:.4f} = {f['margin']:.4f}: pass when the paired {m} rise's upper bound is within it, "
            "fail when its lower bound is beyond it, otherwise inconclusive"]


def plan_lines(meta: dict) -> list[str]:
    b = meta.get("budget")
    lines = [f"steps per variant: {meta.get('steps')}; pruning at {meta.get('prune_slowdown'):g}x the control's step; run order: {', '.join(meta.get('run_order') or [])}"]
    if b:
        lines.append(f"time budget {b['budget_s'] / 60:.1f} min: {b['steps']} steps a variant planned from the control's measured speed "
                     f"({b['probe']['step_s']:.2f} s a step)" + (f"; {b['note']}" if b.get("note") else ""))
    return lines


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


def speed_memory_figure(rows: list[dict], unit: str = "tokens") -> str:
    plt = _plt()
    pts = [r for r in rows if r.get("tokens_per_s") and r.get("peak_memory_bytes")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xy = [(r["peak_memory_bytes"] / MIB, r["tokens_per_s"]) for r in pts]
    for (x, y), r in zip(xy, pts):
        ax.scatter(x, y, color="k" if r["is_control"] else VERDICT_COLOR.get(r["quality_verdict"], "tab:blue"))
        ax.annotate(r["label"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(xy)
    if front:
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "g--", label="Pareto front (less memory, more speed)")
        ax.legend(fontsize=7)
    ax.set_xlabel("peak tracked memory (MiB)")
    ax.set_ylabel(f"{unit}/s")
    ax.set_title("speed vs memory (red: failed the quality gate, orange: inconclusive)", fontsize=9)
    return _png(fig)


def loss_figure(rows: list[dict]) -> str:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        c = r.get("curves") or {}
        style = (dict(color="k", lw=2.5, zorder=5) if r["is_control"] else dict(color="0.5", lw=1.5, ls="--", zorder=4)
                 if r.get("kind") == "control-seed" else dict(lw=1, alpha=0.8))
        if c.get("train"):
            ax1.plot(*zip(*c["train"]), label=r["label"], **style)
        if c.get("val"):
            ax2.plot(*zip(*c["val"]), marker="o", ms=3, label=r["label"], **style)
    for ax, what in ((ax1, "training loss"), (ax2, "validation loss")):
        ax.set_xlabel("step")
        ax.set_ylabel(what)
        ax.set_title(f"{what} (black: the fp32 control; grey dashed: its other seeds)", fontsize=9)
    ax2.legend(fontsize=6)
    return _png(fig)


def speedup_figure(rows: list[dict]) -> str:
    plt = _plt()
    control = next((r for r in rows if r["is_control"] and r.get("tokens_per_s")), None)
    pts = [r for r in rows if r.get("tokens_per_s")]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(pts) + 1))
    if control:
        vals = [r["tokens_per_s"] / control["tokens_per_s"] for r in pts]
        colors = ["k" if r["is_control"] else VERDICT_COLOR.get(r["quality_verdict"], "tab:green") for r in pts]
        ax.barh([r["label"] for r in pts], vals, color=colors)
        ax.axvline(1.0, color="k", ls=":")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.2f}x", va="center", fontsize=7)
    ax.set_xlabel("throughput / fp32 control")
    ax.set_title("speed-up over fp32 (red: failed the quality gate, orange: inconclusive)", fontsize=9)
    return _png(fig)


def render_markdown(rows: list[dict], rec: dict, meta: dict) -> str:
    from trainwise.bench.recommend import summary_line

    head = header(meta.get("throughput_unit", "tokens"))
    lines = [f"# trainwise bench: {meta.get('config')}", "", f"device: {meta.get('device')}; peak matmul GFLOP/s measured here: {meta.get('matmul_gflops')}",
             f"target validation loss: {meta.get('target_val_loss'):.4f}; quality tolerance {meta.get('tolerance'):.0%} of the control's loss; repeats {meta.get('repeats')}", ""]
    lines += [f"{x}  " for x in floor_lines(meta) + plan_lines(meta)]
    lines += ["", f"**{summary_line(rec)}**", ""]
    if rec.get("trainwise_overhead_vs_plain_pytorch") is not None:
        lines += [f"trainwise's step time vs a plain PyTorch loop: {rec['trainwise_overhead_vs_plain_pytorch']:+.1%}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(rows)]
    if rec.get("inconclusive"):
        lines += ["", "## Inconclusive (not recommended until settled)", ""] + [f"- {r['reason']}" for r in rec["inconclusive"]]
    lines += ["", "## Not recommended", ""] + [f"- {r['reason']}" for r in rec.get("rejected", [])]
    return "\n".join(lines) + "\n"


def render_html(rows: list[dict], rec: dict, meta: dict) -> str:
    from trainwise.bench.recommend import summary_line

    unit = meta.get("throughput_unit", "tokens")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header(unit))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(rows))
    rejected = "".join(f"<li>{html.escape(r['reason'])}</li>" for r in rec.get("rejected", []))
    inconclusive = "".join(f"<li>{html.escape(r['reason'])}</li>" for r in rec.get("inconclusive", []))
    notes = "".join(f"<p>{html.escape(x)}</p>" for x in floor_lines(meta) + plan_lines(meta))
    overhead = rec.get("trainwise_overhead_vs_plain_pytorch")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>trainwise bench</title><style>{CSS}</style></head><body>
<h1>trainwise bench</h1>
<p>config {html.escape(str(meta.get('config')))} on {html.escape(str(meta.get('device')))}; measured peak matmul GFLOP/s {html.escape(str(meta.get('matmul_gflops')))};
target validation loss {meta.get('target_val_loss'):.4f}; tolerance {meta.get('tolerance'):.0%}; repeats {meta.get('repeats')}</p>
{notes}
<h2>Recommendation</h2><p><b>{html.escape(summary_line(rec))}</b></p>
{f"<p>trainwise's step time vs a plain PyTorch loop: {overhead:+.1%}</p>" if overhead is not None else ""}
<h2>Variants</h2><table><tr>{head}</tr>{body}</table>
<h2>Speed vs memory</h2>{speed_memory_figure(rows, unit)}
<h2>Speed-up over fp32</h2>{speedup_figure(rows)}
<h2>Loss curves over the fp32 control</h2>{loss_figure(rows)}
{f"<h2>Inconclusive (not recommended until settled)</h2><ul>{inconclusive}</ul>" if inconclusive else ""}
<h2>Not recommended</h2><ul>{rejected}</ul>
</body></html>
"""
