"""`trainwise monitor`: compare a window (or every window of the prediction log) with a reference."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trainwise.cliargs import add_config_args
from trainwise.errors import DataError


def register(subparsers) -> None:
    # Over 60 lines on purpose: argparse registration, one add_argument per flag read top to bottom like `--help`; no
    # logic to split
    p = subparsers.add_parser(
        "monitor",
        help="drift, prediction drift and (estimated) performance of new data against a reference",
        description="Per-column drift tests with effect sizes and thresholds calibrated to the window size, "
        "Benjamini-Hochberg across columns, a domain-classifier test, prediction drift, realised and "
        "label-free estimated accuracy. Writes drift.json and report.html with --out.",
    )
    p.add_argument(
        "--reference",
        help="reference data: Parquet/CSV file, folder of Parquet files, or a run directory "
        "(its model/reference.parquet); with --log, default: the serving model's training reference",
    )
    p.add_argument("--current", help="current data (same forms as --reference)")
    p.add_argument(
        "--log",
        help="a prediction-log folder (the layout trainwise serve writes; docs/serve.md); without --reference "
        "each window is compared with the training reference of the model version that served it",
    )
    p.add_argument(
        "--window", default="1h", help="with --log: window length, e.g. 1h, 30m, 1d, or 10000rows (default 1h)"
    )
    p.add_argument("--since", help="with --log: first timestamp to read (ISO 8601)")
    p.add_argument("--until", help="with --log: read timestamps before this one (ISO 8601)")
    p.add_argument(
        "--labels",
        help="CSV/Parquet of labels that arrived later: request_id and label columns (optionally instance), "
        "joined into the log on request id",
    )
    p.add_argument("--out", help="folder to write drift.json and report.html into")
    p.add_argument("--json", action="store_true", help="print drift.json to stdout instead of a summary")
    add_config_args(
        p,
        config_required=False,
        config="flag",
        config_help="TOML recipe whose [monitor] section sets thresholds and triggers",
        set_metavar="monitor.FIELD=VALUE",
        set_help="override a config field",
    )
    p.add_argument(
        "--model-age-days", type=float, default=None, help="age of the serving model, for the max-age trigger"
    )
    p.add_argument(
        "--common-columns",
        action="store_true",
        help="compare only the columns both sides have (e.g. a run's eval predictions against the log); "
        "the others are listed in drift.json as dropped_columns",
    )
    p.add_argument("--fail-on-drift", action="store_true", help="exit with code 1 when dataset drift is found")
    add_act_args(p)
    p.set_defaults(func=run)

    w = subparsers.add_parser(
        "watch",
        help="check the prediction log's new windows and retrain through the gate when a trigger fires",
        description="A loop over the prediction log: every --interval-s seconds the complete windows written since "
        "the last check are compared with --reference (default: the training reference of the model version that "
        "served them); when a monitor.trigger_* fires, the champion's recipe is retrained on the "
        "window's labelled rows, evaluated, gated against the champion on the same rows, and promoted or rejected, "
        "all recorded in the registry's audit trail.",
    )
    w.add_argument("--log", required=True, help="the prediction-log folder trainwise serve writes (serve.log_dir)")
    w.add_argument(
        "--reference", help="reference data (default: the training reference stored with the serving model version)"
    )
    w.add_argument(
        "--labels", help="labels file (request_id, label), read again at every check: labels may arrive over time"
    )
    w.add_argument("--window", default="1h", help="window length, e.g. 1h, 30m, or 10000rows (default 1h)")
    w.add_argument("--interval-s", type=float, default=60.0, help="seconds between checks (default 60)")
    w.add_argument("--iterations", type=int, default=0, help="stop after this many checks (0 = run until interrupted)")
    w.add_argument("--out", required=True, help="folder for drift.json, report.html, retraining runs and watch state")
    add_config_args(
        w,
        config_required=False,
        config="flag",
        config_help="TOML recipe whose [monitor] section sets thresholds and triggers",
        set_help="override a config field",
    )
    w.add_argument(
        "--model-age-days", type=float, default=None, help="age of the serving model, for the max-age trigger"
    )
    add_act_args(w, always=True)
    w.set_defaults(func=watch)


def add_act_args(p, always: bool = False) -> None:
    if not always:
        p.add_argument(
            "--act",
            action="store_true",
            help="when a trigger fires, retrain --model through the gate (needs labels in the window)",
        )
    p.add_argument("--model", help="registered model name the triggers act on (with --act / watch)")
    p.add_argument("--alias", default="champion", help="alias holding the serving model (default champion)")
    p.add_argument("--gate", help="gate TOML for the retrained model (default: the evaluate component's default gate)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument(
        "--retrain-set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a field of the champion's recipe when retraining (e.g. train.steps=100)",
    )


def run(args: argparse.Namespace) -> int:
    """Parse-level glue: the check is trainwise.monitor.check's; retraining, outputs and printing follow."""
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.config import load_config
    from trainwise.monitor.check import check_files, check_windows
    from trainwise.monitor.report import strip_plots, write_outputs

    cfg = load_config(args.config, args.overrides).monitor
    if args.log:
        result = check_windows(
            args.log,
            cfg,
            window=args.window,
            since=args.since,
            until=args.until,
            reference=args.reference,
            labels=args.labels,
            tracking_uri=args.tracking_uri,
            common_columns=args.common_columns,
            model_age_days=args.model_age_days,
            keep_rows=args.act,
        )
    else:
        result = check_files(
            args.reference, args.current, cfg, args.labels, args.common_columns, model_age_days=args.model_age_days
        )
    drift = result.drift
    if args.act:
        if args.out:
            write_outputs(drift, args.out, html_report=False)  # the check is on disk even if retraining then fails
        drift["retraining"] = _act(args, cfg, drift["triggers"], result.rows)
    if args.out:
        write_outputs(drift, args.out)
    if args.json:
        print(json.dumps(strip_plots(drift), indent=2, default=_json_default))
    else:
        print(summary_text(drift))
        if drift.get("retraining"):
            print(retraining_text(drift["retraining"]))
    return 1 if args.fail_on_drift and drift["dataset_drift"] else 0


def _act(args, cfg, fired: list[dict], rows) -> dict:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.monitor.check import act_on_triggers

    return act_on_triggers(
        fired, rows, cfg, args.model, args.alias, args.gate, args.tracking_uri, tuple(args.retrain_set), args.out
    )


def retraining_text(record: dict) -> str:
    if record["decision"] == "none":
        return "retraining: no trigger fired"
    why = "" if record["decision"] == "promoted" else f" ({'; '.join(record.get('gate_reasons', []))})"
    verdict = record.get("gate_verdict") or ("pass" if record["gate_passed"] else "fail")
    return (
        f"retraining: trained {record['run_dir']}, registered v{record['version']}, gate {verdict}: "
        f"{record['decision']}{why}"
    )


def watch(args: argparse.Namespace) -> int:
    """Check the complete windows written since the last check, every interval; act on triggers; remember
    what was checked (OUT/watch_state.json)."""

    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.config import load_config
    from trainwise.monitor.check import check_windows
    from trainwise.monitor.report import write_outputs
    from trainwise.rundir import read_json, write_json

    cfg = load_config(args.config, args.overrides).monitor
    state_path = Path(args.out) / "watch_state.json"
    state = read_json(state_path) if state_path.is_file() else {"last_window_end": None, "checks": 0}
    iteration = 0
    while not args.iterations or iteration < args.iterations:
        iteration += 1
        try:
            result = check_windows(
                args.log,
                cfg,
                window=args.window,
                after=state["last_window_end"],
                reference=args.reference,
                labels=args.labels,
                tracking_uri=args.tracking_uri,
                complete_only=True,
                model_age_days=args.model_age_days,
                keep_rows=True,
            )
            write_outputs(result.drift, args.out, html_report=False)  # on disk even if retraining then fails
            result.drift["retraining"] = _act(args, cfg, result.drift["triggers"], result.rows)
            write_outputs(result.drift, args.out)
            print(summary_text(result.drift))
            print(retraining_text(result.drift["retraining"]))
            state["last_window_end"] = result.last_window_end or state["last_window_end"]
        except DataError as e:  # no new complete window yet, or labels still missing: try again at the next interval
            print(f"watch: {e}")
        state["checks"] += 1
        write_json(state_path, state)
        if not args.iterations or iteration < args.iterations:
            time.sleep(args.interval_s)
    return 0


def summary_text(result: dict) -> str:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.monitor.labels import labels_text

    lines = [f"reference: {result['reference']['source']} ({result['reference']['n_rows']} rows)", result["verdict"]]
    if result.get("labels"):
        lines.append(labels_text(result["labels"]))
    for c in result["columns"] + ([result["multivariate"]] if result.get("multivariate") else []):
        if c.get("status") == "ok":
            lines.append(
                f"  {c['name']:<24} {c['test']:<22} {c['effect_measure']}={c['effect_size']:.4f} "
                f"(threshold {c['threshold']:.4f})  p={c['p_value']:.3g}  {'DRIFT' if c['drift'] else ''}"
            )
    if result.get("prediction_drift") is not None:
        lines.append(f"prediction drift: {'yes' if result['prediction_drift'] else 'no'}")
    est = (result.get("performance") or {}).get("estimated")
    if est:
        lines.append(
            f"estimated accuracy {est['accuracy']:.4f} (95% interval {est['ci_low']:.4f} to {est['ci_high']:.4f})"
        )
    for w in result.get("windows", []):
        served = f"  {w['model_version']}" if w.get("model_version") else ""
        lines.append(
            f"  window {w['start']}{served}  rows={w['n_rows']}  drift={w['dataset_drift']}  "
            f"{', '.join(w['drifted_columns'])}"
        )
    for t in result.get("triggers", []):
        lines.append(f"trigger fired: {t['name']}: {t['reason']}")
    return "\n".join(lines)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)
