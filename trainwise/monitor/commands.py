"""`trainwise monitor`: compare a window (or every window of the prediction log) with a reference."""

from __future__ import annotations

import argparse
import json


from trainwise.errors import DataError


def register(subparsers) -> None:
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
    p.add_argument("--config", help="TOML recipe whose [monitor] section sets thresholds and triggers")
    p.add_argument("--set", action="append", default=[], metavar="monitor.FIELD=VALUE", help="override a config field")
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
        description="A loop over the prediction log: every --interval-s seconds the complete windows written since the last "
        "check are compared with --reference (default: the training reference of the model version that served them); when a monitor.trigger_* fires, the champion's recipe is retrained on the "
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
    w.add_argument("--config", help="TOML recipe whose [monitor] section sets thresholds and triggers")
    w.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override a config field")
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
    from trainwise.config import load_config
    from trainwise.monitor.report import strip_plots, write_outputs
    from trainwise.monitor.triggers import evaluate_triggers

    cfg = load_config(args.config, args.set).monitor
    if args.log:
        result, windows = check_log(args, cfg)
        frame = windows[-1].frame
    else:
        result, frame = check_files(args, cfg)
    result["triggers"] = [t.to_dict() for t in evaluate_triggers(result, cfg, args.model_age_days)]
    if getattr(args, "act", False):
        if args.out:
            write_outputs(result, args.out, html_report=False)  # the check is on disk even if retraining then fails
        result["retraining"] = act_on_triggers(args, cfg, result["triggers"], frame)
    if args.out:
        write_outputs(result, args.out)
    if args.json:
        print(json.dumps(strip_plots(result), indent=2, default=_json_default))
    else:
        print(summary_text(result))
        if result.get("retraining"):
            print(retraining_text(result["retraining"]))
    return 1 if args.fail_on_drift and result["dataset_drift"] else 0


def check_files(args, cfg) -> tuple[dict, object]:
    """--reference against --current (labels joined into current)."""
    from trainwise.monitor.data import load_table
    from trainwise.monitor.triggers import build_monitor

    if not (args.reference and args.current):
        raise DataError("give --reference and --current (Parquet/CSV files), or --log DIR --window 1h")
    reference, current = load_table(args.reference), load_table(args.current)
    labels = None
    if args.labels:
        from trainwise.monitor.labels import join_labels

        current, labels = join_labels(current, args.labels, cfg.label_column)
    dropped: list[str] = []
    if args.common_columns:
        reference, dropped = common_columns(reference, [current], keep=[cfg.label_column])
    result = build_monitor(cfg).fit(reference).check(current)
    result.update(
        reference={"source": f"--reference {args.reference}", "n_rows": len(reference)},
        dropped_columns=dropped,
        labels=labels,
    )
    return result, current


def check_log(args, cfg) -> tuple[dict, list]:
    """Every window of the log against its reference; the latest window's result plus the timeline."""
    from trainwise.monitor.data import load_log_windows
    from trainwise.monitor.triggers import build_monitor

    windows, labels = load_log_windows(
        args.log,
        args.window,
        args.since,
        args.until,
        after=getattr(args, "after", None),
        labels=args.labels,
        label_column=cfg.label_column,
        complete_only=getattr(args, "complete_only", False),
    )
    if not windows:
        raise DataError(f"the prediction log {args.log} has no complete {args.window} window yet")
    reference_of, windows = reference_source(args, windows)
    monitors: dict[str, tuple] = {}
    results = []
    for w in windows:
        frame, source = reference_of(w)
        if source not in monitors:
            dropped: list[str] = []
            if args.common_columns:
                frame, dropped = common_columns(frame, [v.frame for v in windows], keep=[cfg.label_column])
            monitors[source] = (build_monitor(cfg).fit(frame), {"source": source, "n_rows": len(frame)}, dropped)
        monitor, reference, dropped = monitors[source]
        results.append((w, {**monitor.check(w.frame), "reference": reference, "dropped_columns": dropped}))
    result = dict(results[-1][1])  # the latest window, plus the timeline of all of them
    result["windows"] = [window_summary(w, r) for w, r in results]
    result["labels"] = labels
    return result, windows


def reference_source(args, windows: list):
    """(window -> (reference frame, what it is), windows to judge).

    --reference when given; else the training reference stored with the model version that served
    the window (from the registry); a log without model_version (not written by trainwise serve)
    falls back to its own first window.
    """
    from trainwise.monitor.data import load_table
    from trainwise.monitor.reference import version_reference

    if args.reference:
        frame = load_table(args.reference)
        return (lambda w: (frame, f"--reference {args.reference}")), windows
    if windows[0].model_version is None:
        if len(windows) < 2:
            raise DataError(
                f"the prediction log {args.log} holds a single {args.window} window and no model_version column; "
                "give --reference, or a shorter --window"
            )
        first = windows[0]
        return (
            lambda w: (
                first.frame,
                f"first window of the log ({first.start} to {first.end}): it has no model_version column",
            )
        ), windows[1:]
    cache: dict[str, tuple] = {}

    def training(w):
        if w.model_version not in cache:
            cache[w.model_version] = version_reference(w.model_version, args.tracking_uri)
        return cache[w.model_version]

    return training, windows


def act_on_triggers(args, cfg, fired: list[dict], frame) -> dict:
    """Retrain args.model on `frame`'s labelled rows (the model's raw input columns) through the gate when any trigger fired."""
    import time
    from pathlib import Path

    from trainwise.monitor.logschema import training_rows
    from trainwise.monitor.pipeline import real_steps
    from trainwise.monitor.retrain import run_retraining

    if not args.model:
        raise DataError("--act needs --model NAME: the registered model the triggers act on")
    if not fired:
        return {"decision": "none", "triggers": []}
    if cfg.label_column not in frame.columns:
        raise DataError(
            f"a trigger fired but the window has no {cfg.label_column!r} column: retraining needs labelled rows (monitor.label_column)"
        )
    rows = training_rows(frame, cfg.label_column).dropna(subset=[cfg.label_column])
    if len(rows) < cfg.min_window_rows:
        raise DataError(
            f"a trigger fired but only {len(rows)} rows of the window are labelled (at least monitor.min_window_rows = "
            f"{cfg.min_window_rows} needed to retrain); give --labels FILE with the labels that have arrived"
        )
    work = Path(args.out or "runs") / f"retrain-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True, exist_ok=True)
    steps = real_steps(
        args.model, args.alias, cfg.label_column, work, args.tracking_uri, args.gate, tuple(args.retrain_set)
    )
    return run_retraining(fired, rows, work, steps)


def retraining_text(record: dict) -> str:
    if record["decision"] == "none":
        return "retraining: no trigger fired"
    why = "" if record["decision"] == "promoted" else f" ({'; '.join(record.get('gate_reasons', []))})"
    return f"retraining: trained {record['run_dir']}, registered v{record['version']}, gate {record.get('gate_verdict') or ('pass' if record['gate_passed'] else 'fail')}: {record['decision']}{why}"


def watch(args: argparse.Namespace) -> int:
    """Check the complete windows written since the last check, every interval; act on triggers; remember what was checked."""
    import time
    from pathlib import Path

    from trainwise.rundir import read_json, write_json

    state_path = Path(args.out) / "watch_state.json"
    state = read_json(state_path) if state_path.is_file() else {"last_window_end": None, "checks": 0}
    iteration = 0
    while not args.iterations or iteration < args.iterations:
        iteration += 1
        check = argparse.Namespace(
            **{
                **vars(args),
                "current": None,
                "since": None,
                "after": state["last_window_end"],
                "until": None,
                "json": False,
                "common_columns": False,
                "fail_on_drift": False,
                "act": True,
                "complete_only": True,
            }
        )
        try:
            run(check)
            windows = read_json(Path(args.out) / "drift.json").get("windows") or []
            state["last_window_end"] = windows[-1]["end"] if windows else state["last_window_end"]
        except DataError as e:  # no new complete window yet, or labels still missing: try again at the next interval
            print(f"watch: {e}")
        state["checks"] += 1
        write_json(state_path, state)
        if not args.iterations or iteration < args.iterations:
            time.sleep(args.interval_s)
    return 0


def common_columns(reference, currents: list, keep: list[str]):
    """The reference restricted to columns every current table has (plus `keep`), and the dropped names.

    Current tables keep their extra columns: the monitor ignores columns it was not fitted on only
    if they are dropped too, so they are removed in place.
    """
    shared = [c for c in reference.columns if all(c in cur.columns for cur in currents) or c in keep]
    dropped = sorted(set(reference.columns).union(*[set(cur.columns) for cur in currents]) - set(shared))
    for cur in currents:
        cur.drop(columns=[c for c in cur.columns if c not in shared], inplace=True)
    return reference[shared], dropped


def window_summary(window, result: dict) -> dict:
    perf = result.get("performance") or {}
    est = perf.get("estimated")
    real = (perf.get("realised") or {}).get("current")
    return {
        "label": window.label,
        "start": window.start,
        "end": window.end,
        "n_rows": result["n_current"],
        "model_version": window.model_version,
        "reference": result["reference"]["source"],
        "dataset_drift": result["dataset_drift"],
        "prediction_drift": result["prediction_drift"],
        "n_drifted_columns": sum(c["drift"] for c in result["columns"]),
        "drifted_columns": [c["name"] for c in result["columns"] if c["drift"]],
        "estimated_accuracy": est["accuracy"] if est else None,
        "estimated_ci": [est["ci_low"], est["ci_high"]] if est else None,
        "realised_accuracy": real["accuracy"] if real else None,
    }


def summary_text(result: dict) -> str:
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
            f"  window {w['start']}{served}  rows={w['n_rows']}  drift={w['dataset_drift']}  {', '.join(w['drifted_columns'])}"
        )
    for t in result.get("triggers", []):
        lines.append(f"trigger fired: {t['name']}: {t['reason']}")
    return "\n".join(lines)


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    return str(o)
