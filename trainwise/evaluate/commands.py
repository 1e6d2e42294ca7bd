"""Verbs: `trainwise evaluate`, `trainwise compare`, `trainwise data check`."""

from __future__ import annotations

import json
import sys

from trainwise.cliargs import add_config_args
from trainwise.errors import TrainwiseError


def register(subparsers) -> None:
    # Over 60 lines on purpose: argparse registration, one add_argument per flag read top to bottom like `--help`; no
    # logic to split
    p = subparsers.add_parser(
        "evaluate",
        help="predictions, metrics, calibration, slices and robustness of a trained run",
        description="Write predictions.parquet, metrics.json and report.html for a run directory.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `trainwise train`")
    p.add_argument("--split", default="test", choices=["val", "test"], help="split to evaluate (default: test)")
    p.add_argument(
        "--slices",
        default=None,
        help="comma-separated slice columns (default: the config's eval.slices, else the workload's)",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: RUN_DIR/eval)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap replicates for slice confidence intervals (default: 200)",
    )
    p.add_argument("--no-robustness", action="store_true", help="skip the perturbation metrics")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "compare",
        help="paired comparison of two runs and a quality gate (exit 0 pass, 1 fail, 3 inconclusive, 2 bad input)",
        description="Compare a candidate with a baseline on the same examples: McNemar, paired intervals, DeLong, "
        "per-slice deltas, and a gate of rules, each pass (shown within tolerance), fail (shown worse) or "
        "inconclusive (neither: the output says how many examples would settle it). "
        "Exit code 0 pass, 1 fail, 3 inconclusive, 2 bad input.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="run directory, evaluation directory or predictions.parquet")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory, evaluation directory or predictions.parquet")
    p.add_argument(
        "--gate",
        default=None,
        metavar="GATE.toml",
        help="gate rules (default: the built-in gate; see docs/evaluate.md)",
    )
    p.add_argument("--json", action="store_true", help="print the full comparison as JSON")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="paired bootstrap replicates for ECE, AUC, F1 and other non-mean metrics (default: 1000)",
    )
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("data", help="data-quality checks (`trainwise data check`)")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    c = sub.add_parser(
        "check",
        help="schema, missing values, imbalance, duplicates, leakage, label issues, personal data, fingerprints",
        description="Check a CONFIG (.toml: its workload's splits) or a FILE (CSV/Parquet table).",
    )
    c.add_argument("source", metavar="CONFIG|FILE")
    c.add_argument(
        "--against",
        default=None,
        metavar="OTHER",
        help="another table (test or serving data) to check FILE against for leakage and schema",
    )
    c.add_argument(
        "--target",
        default=None,
        metavar="COLUMN",
        help="FILE's label column (enables imbalance and label-issue checks)",
    )
    c.add_argument(
        "--fail-on",
        default="",
        metavar="RULES",
        help="comma-separated findings that fail the command, each NAME or NAME>NUMBER "
        "(schema, missing, imbalance, duplicates, leakage, label_issues, pii)",
    )
    add_config_args(c, config=None, set_help="override a CONFIG field")
    c.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="also write the report as JSON to PATH ('-' prints JSON instead of text)",
    )
    c.set_defaults(func=cmd_data_check)
    p.set_defaults(func=lambda args: _data_usage(p))


def _data_usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def cmd_evaluate(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.evaluate.evaluate import evaluate_run

    if args.bootstrap < 1:
        raise TrainwiseError(f"--bootstrap {args.bootstrap}: expected a positive number of replicates")
    slices = None if args.slices is None else [s.strip() for s in args.slices.split(",") if s.strip()]
    m = evaluate_run(
        args.run_dir, args.split, slices, args.out, n_boot=args.bootstrap, with_robustness=not args.no_robustness
    )
    keys = (
        ("loss", "bits_per_byte", "next_byte_accuracy")
        if m["task"] == "lm"
        else ("accuracy", "f1_macro", "roc_auc", "log_loss", "ece")
    )
    print(
        f"{m['workload']} {m['split']} (n={m['n']}): "
        + ", ".join(f"{k}={m[k]:.4f}" for k in keys if m.get(k) is not None)
    )
    if "skipped" in m.get("robustness", {}):
        print(f"robustness perturbations skipped: {m['robustness']['skipped']}")
    print(f"wrote {args.out or (args.run_dir.rstrip('/') + '/eval')}/{{predictions.parquet,metrics.json,report.html}}")
    return 0


def cmd_compare(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.evaluate.compare import compare_dirs
    from trainwise.evaluate.gate import EXIT_CODES, load_gate

    if args.bootstrap < 100:
        raise TrainwiseError(f"--bootstrap {args.bootstrap}: expected at least 100 replicates for confidence bounds")
    gate = load_gate(args.gate) if args.gate else None
    c = compare_dirs(args.baseline, args.candidate, gate, n_boot=args.bootstrap)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2, default=float))
    else:
        print(format_comparison(c))
    return EXIT_CODES[c.verdict]


def format_comparison(c) -> str:
    split = f", {c.split} split" if c.split else ""
    lines = [
        f"paired comparison on {c.n} examples ({c.task}{split})",
        f"  {'metric':20s} {'baseline':>10s} {'candidate':>10s} {'delta':>10s}  95% CI",
    ]
    for m, d in c.deltas.items():
        if d["baseline"] == d["baseline"] and d["ci95"][0] == d["ci95"][0]:  # skip undefined (NaN) metrics
            lines.append(
                f"  {m:20s} {d['baseline']:10.4f} {d['candidate']:10.4f} {d['delta']:+10.4f}  "
                f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]  {d['interval']}"
            )
    if "mcnemar" in c.tests:
        t = c.tests["mcnemar"]
        lines.append(
            f"  McNemar exact: baseline-only right {t['a_only_correct']}, "
            f"candidate-only right {t['b_only_correct']}, p = {t['p_value']:.3g}"
        )
    if "delong" in c.tests:
        t = c.tests["delong"]
        lines.append(
            f"  DeLong: AUC {t['auc_a']:.4f} -> {t['auc_b']:.4f} (delta {t['delta']:+.4f}, p = {t['p_value']:.3g})"
        )
    lines.append(
        "  gate rules (pass: upper bound of the worsening <= tolerance; fail: lower bound > tolerance; "
        "else inconclusive):"
    )
    for r in c.rules:
        if r["status"] != "not applicable":
            lines.append(f"  [{r['status'].upper()}] {r['rule']}: {r['detail']}")
    verdict = {"pass": "gate: PASSED", "fail": "gate: FAILED", "inconclusive": "gate: INCONCLUSIVE"}[c.verdict]
    lines.append(verdict + (f" ({c.settle})" if c.settle else ""))
    return "\n".join(lines)


def cmd_data_check(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.evaluate.datacheck import check_data, format_report
    from trainwise.rundir import write_json

    report = check_data(args.source, args.against, args.target, args.fail_on, args.overrides)
    if args.json == "-":
        print(json.dumps(report, indent=2, default=float))
    else:
        print(format_report(report))
        if args.json:
            write_json(args.json, report)
    return 0 if report["passed"] else 1
