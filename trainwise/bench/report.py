"""report.md and a self-contained report.html (figures as base64 PNG data URIs: no network)."""

from __future__ import annotations

import html

from trainwise.bench.figures import (  # noqa: F401  (pareto_front: re-exported)
    loss_figure,
    pareto_front,
    speed_memory_figure,
    speedup_figure,
)
from trainwise.bench.recommend import summary_line
from trainwise.evaluate.report import CSS
from trainwise.runstatus import RunStatus

MIB = 2**20


def header(unit: str = "tokens") -> list[str]:
    return [
        "variant",
        "status",
        "median step ms (min-max)",
        "step time vs control (95% CI)",
        f"{unit}/s",
        "MFU",
        "peak act MiB",
        "peak mem MiB",
        "val loss",
        "quality",
        "time to target s",
        "skipped",
        "alarms",
    ]


def _f(v, spec=".1f", scale=1.0) -> str:
    return "—" if v is None else format(v / scale, spec)


def _speed_cell(r: dict) -> str:
    if r.get("median_step_ms"):
        cell = f"{_f(r.get('median_step_ms'))} ({_f(r.get('step_ms_min'))}-{_f(r.get('step_ms_max'))})"
        return cell + (" emulated" if r.get("emulated") else "")
    if r.get("pruned"):
        p = r["pruned"]
        return f"{p['slowdown']:.0f}x the control's ({p['observed_steps']} steps)"
    return "not timed" if r.get("kind") == "control-seed" and r.get("status") == RunStatus.COMPLETED else "—"


def _ratio(s: dict | None) -> str:
    """A paired speed ratio from the timing phase, or why none is quoted."""
    if not s:
        return "—"
    return f"{s['median']:.2f}x ({s['ci95'][0]:.2f}-{s['ci95'][1]:.2f})" if s["reliable"] else "unreliable"


def _quality_cell(r: dict) -> str:
    v = r.get("quality_verdict", "")
    if r.get("quality_upper_rise") is not None:
        return (
            f"{v} (rise {r['quality_lower_rise']:+.1%} to {r['quality_upper_rise']:+.1%}, margin "
            f"{r['quality_margin_rise']:.1%})"
        )
    return v


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        tag = " [control]" if r["is_control"] else (" [noise floor]" if r.get("kind") == "control-seed" else "")
        out.append(
            [
                r["label"] + tag,
                r["status"],
                _speed_cell(r),
                _ratio(r.get("speed_ratio_vs_control")),
                _f(r.get("tokens_per_s"), ",.0f"),
                r.get("mfu_note") or _f(r.get("mfu"), ".2%"),
                _f(r.get("peak_activation_bytes"), ".1f", MIB),
                _f(r.get("peak_memory_bytes"), ".1f", MIB),
                _f(r.get("final_val_loss"), ".4f"),
                _quality_cell(r),
                _f(r.get("time_to_target_s"), ".1f"),
                str(r.get("skipped_steps", "—")),
                str(len(r.get("alarms") or [])),
            ]
        )
    return out


def timing_line(meta: dict, rec: dict) -> str:
    """How speeds were measured, the timing verdict with the load, and trainwise's overhead over
    plain PyTorch (or why it is not quoted)."""
    t = meta.get("timing")
    if t:
        load = f"; load {t['load_per_core']:.2f} per core over the rounds" if t.get("load_per_core") is not None else ""
        steal = f", steal {t['steal_share']:.0%}" if t.get("steal_share") else ""
        how = (
            f"speeds from {t['rounds']} interleaved timing rounds x {t['steps_per_round']} steps after "
            f"training{load}{steal}: "
        )
        if t.get("unreliable_reason"):
            how += t["unreliable_reason"]
        elif t.get("ratios_quoted", 0) < t.get("ratios", 0):
            how += (
                f"the load was within bench.max_load_per_core, but {t['ratios'] - t['ratios_quoted']} of {t['ratios']} "
                "speed ratios scattered too widely to quote (bench.max_ratio_ci)"
            )
        else:
            how += "timings reliable"
    else:
        how = "speeds from the training runs, not interleaved (" + (meta.get("timing_note") or "no timing phase") + ")"
    overhead = rec.get("trainwise_overhead_vs_plain_pytorch")
    if overhead is not None:
        ci = rec.get("trainwise_overhead_ci95")
        how += f". trainwise's step time vs a plain PyTorch loop: {overhead:+.1%}" + (
            f" (95% CI {ci[0]:+.1%} to {ci[1]:+.1%})" if ci else ""
        )
    elif rec.get("trainwise_overhead_note"):
        note = rec["trainwise_overhead_note"]
        how += ". trainwise's step time vs a plain PyTorch loop: " + (
            "not quoted (timings unreliable)" if t and note == t.get("unreliable_reason") else note
        )
    return how


def floor_lines(meta: dict) -> list[str]:
    """The noise floor and the verdict rule, in words."""
    f = meta.get("noise_floor") or {}
    if not f.get("measured"):
        return [f"noise floor: not measured ({f.get('reason', 'no second seed')}); verdict margin = tolerance only"]
    m, p = f["metric"], f["primary_metric"]
    pm = f["per_metric"]
    seeds = ", ".join(f"{x:.4f}" for x in pm[m]["per_seed"])
    return [
        f"noise floor: {f['seeds']} seeds of the fp32 control differ by {pm[m]['floor']:.4f} in validation {m} "
        f"({seeds}; {pm[m]['floor'] / f['control_loss']:.1%} of the control's) and by {pm[p]['floor']:.4f} in "
        f"{p.replace('_', ' ')}",
        f"verdict margin = tolerance {meta.get('tolerance'):.0%} x control loss + noise floor = "
        f"{f['tolerance_abs']:.4f} + {pm[m]['floor']:.4f} = {f['margin']:.4f}: pass when the paired {m} rise's upper "
        "bound is within it, fail when its lower bound is beyond it, otherwise inconclusive",
    ]


def plan_lines(meta: dict) -> list[str]:
    """Steps, pruning, run order; with a budget, the plan against what each phase took."""
    lines = [
        f"steps per variant: {meta.get('steps')}; pruning at {meta.get('prune_slowdown'):g}x the control's step; "
        f"run order: {', '.join(meta.get('run_order') or [])}"
    ]
    b, took = meta.get("budget"), meta.get("phases_s") or {}
    if b:
        training = sum(b["predicted_s"].values())
        lines.append(
            f"time budget {b['budget_s'] / 60:.1f} min, planned from the control's measured speed "
            f"({b['probe']['step_s']:.2f} s a step, {b['probe']['fixed_s']:.0f} s a run besides its steps): "
            f"{b['spent_s']:.0f} s measuring (matmul peaks, speed probe), about {training:.0f} s training {b['steps']} "
            f"steps a variant, {b['timing_reserve_s']:.0f} s timing ({b['timing_rounds_reserved']} rounds at least), "
            f"{b['tail_s']:.0f} s quality and report" + (f"; {b['note']}" if b.get("note") else "")
        )
    if took:
        lines.append("took: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
    return lines


def header_lines(meta: dict) -> list[str]:
    return [
        f"device: {meta.get('device')}; peak matmul GFLOP/s measured here: {meta.get('matmul_gflops')}",
        f"target validation loss: {meta.get('target_val_loss'):.4f}; quality tolerance {meta.get('tolerance'):.0%} of "
        "the control's loss",
    ]


def render_markdown(rows: list[dict], rec: dict, meta: dict) -> str:
    head = header(meta.get("throughput_unit", "tokens"))
    lines = [f"# trainwise bench: {meta.get('config')}", ""] + [f"{x}  " for x in header_lines(meta)] + [""]
    lines += [f"**{summary_line(rec)}**", "", timing_line(meta, rec), ""]
    lines += [f"{x}  " for x in floor_lines(meta) + plan_lines(meta)] + [""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(rows)]
    if rec.get("inconclusive"):
        lines += ["", "## Inconclusive (not recommended until settled)", ""] + [
            f"- {r['reason']}" for r in rec["inconclusive"]
        ]
    lines += ["", "## Not recommended", ""] + [f"- {r['reason']}" for r in rec.get("rejected", [])]
    return "\n".join(lines) + "\n"


def _paragraphs(lines: list[str]) -> str:
    return "".join(f"<p>{html.escape(x)}</p>" for x in lines)


def render_html(rows: list[dict], rec: dict, meta: dict) -> str:
    unit = meta.get("throughput_unit", "tokens")
    unreliable = rec.get("speed_unreliable")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header(unit))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(rows))
    rejected = "".join(f"<li>{html.escape(r['reason'])}</li>" for r in rec.get("rejected", []))
    inconclusive = "".join(f"<li>{html.escape(r['reason'])}</li>" for r in rec.get("inconclusive", []))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>trainwise bench</title>\
<style>{CSS}</style></head><body>
<h1>trainwise bench: {html.escape(str(meta.get("config")))}</h1>
{_paragraphs(header_lines(meta))}
<h2>Recommendation</h2><p><b>{html.escape(summary_line(rec))}</b></p>
<p>{html.escape(timing_line(meta, rec))}</p>
{_paragraphs(floor_lines(meta) + plan_lines(meta))}
<h2>Variants</h2><table><tr>{head}</tr>{body}</table>
<h2>Speed vs memory</h2>{speed_memory_figure(rows, unit, unreliable)}
<h2>Speed-up over fp32</h2>{speedup_figure(rows, rec)}
<h2>Loss curves over the fp32 control</h2>{loss_figure(rows)}
{f"<h2>Inconclusive (not recommended until settled)</h2><ul>{inconclusive}</ul>" if inconclusive else ""}
<h2>Not recommended</h2><ul>{rejected}</ul>
</body></html>
"""
