"""CLI verbs of the registry: register, promote, rollback, history, card, ui."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

from trainwise.registry.store import RegistryError, resolve_tracking_uri


def _uri_arg(p) -> None:
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )


def register(sub) -> None:
    # Over 60 lines on purpose: argparse registration, one add_argument per flag read top to bottom like `--help`; no
    # logic to split
    p = sub.add_parser("register", help="register a run directory's model as a new version")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--experiment", default="trainwise", help="MLflow experiment of the run (if not logged yet)")
    p.add_argument("--json", action="store_true", help="print {name, version, run_id, source} as JSON")
    _uri_arg(p)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser(
        "promote",
        help="move an alias to a version if it passes the gate against the current holder",
        description="Gate VERSION against the alias's current holder and move the alias only when the gate passes. "
        "Exit 0 moved (or --check: pass), 1 gate failed, 3 gate inconclusive (not shown within tolerance: "
        "the message says what would settle it), 2 bad input.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--alias", default="champion")
    p.add_argument("--reason", default="", help="why (recorded in the audit trail; required with --force)")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote even if the gate fails or is inconclusive (recorded as an override)",
    )
    p.add_argument(
        "--accept-inconclusive",
        action="store_true",
        help="promote when the gate is inconclusive (not shown worse, not shown within tolerance); "
        "needs --reason, recorded",
    )
    p.add_argument(
        "--gate", default=None, metavar="FILE", help="gate file (default: the evaluate component's default gate)"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only run the gate against the current holder: exit 0 pass, 1 fail, 3 inconclusive; change nothing",
    )
    _uri_arg(p)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", help="move an alias back to its previous holder (or --to VERSION)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--alias", default="champion")
    p.add_argument("--to", default=None, metavar="VERSION")
    p.add_argument("--reason", default="")
    _uri_arg(p)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("history", help="the audit trail of a model's alias moves, or who held each alias --at a time")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--at", default=None, metavar="TIMESTAMP", help="ISO 8601 time (UTC if no zone) or Unix seconds")
    _uri_arg(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("card", help="write the Markdown model card of a version")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--out", default=None, metavar="FILE", help="write here instead of stdout")
    _uri_arg(p)
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("ui", help="start the MLflow UI on the tracking store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    _uri_arg(p)
    p.set_defaults(func=cmd_ui)


def _store_errors(fn):
    """An error MLflow raises (a locked database, a server-side refusal) becomes one clean line."""

    @functools.wraps(fn)
    def run(args) -> int:
        # lazy: mlflow is heavy and only needed when the registry is reached
        from mlflow.exceptions import MlflowException

        try:
            return fn(args)
        except MlflowException as e:
            uri = resolve_tracking_uri(getattr(args, "tracking_uri", None))
            raise RegistryError(
                f"MLflow store {uri} refused the request ({e.error_code}): {str(e.message).splitlines()[0]}"
            ) from None

    return run


@_store_errors
def cmd_register(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.registry.versions import register_run

    mv = register_run(args.run_dir, args.name, args.tracking_uri, args.experiment)
    if args.json:
        print(json.dumps({"name": args.name, "version": str(mv.version), "run_id": mv.run_id, "source": mv.source}))
        return 0
    print(
        f"registered {args.name} version {mv.version} from {args.run_dir} "
        f"(weights sha256 {mv.tags['trainwise.weights_sha256'][:12]}...)"
    )
    return 0


@_store_errors
def cmd_promote(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.registry.gate import EXIT_CODES
    from trainwise.registry.promote import promote

    r = promote(
        args.name,
        args.version,
        args.alias,
        args.reason,
        args.force,
        args.tracking_uri,
        args.gate,
        check_only=args.check,
        accept_inconclusive=args.accept_inconclusive,
    )
    if r.action.startswith("check-"):
        print(
            f"gate {r.verdict}: {args.name} v{r.to_version} against {args.name}@{r.alias} "
            f"(v{r.from_version or '-'}); nothing changed"
        )
        for f in r.failures:
            print(f"  - {f}")
        return EXIT_CODES.get(r.outcome, 1)
    if r.action == "noop":
        print(f"{args.name}@{r.alias} already is version {r.to_version}; nothing to do")
        return 0
    if r.action == "refused":
        why = "is not shown within tolerance of" if r.outcome == "inconclusive" else "does not pass the gate against"
        print(
            f"refused: {args.name} v{r.to_version} {why} v{r.from_version} (gate {r.verdict}; audit entry {r.seq}):",
            file=sys.stderr,
        )
        for f in r.failures:
            print(f"  - {f}", file=sys.stderr)
        if r.outcome == "inconclusive":
            print(
                "settle it with more evaluation data, "
                "or accept it knowingly with --accept-inconclusive --reason TEXT (recorded)",
                file=sys.stderr,
            )
        print("override with --force --reason TEXT (recorded)", file=sys.stderr)
        return EXIT_CODES.get(r.outcome, 1)
    print(
        f"{args.name}@{r.alias}: v{r.from_version or '-'} -> v{r.to_version} "
        f"({r.action}, gate {r.verdict}; audit entry {r.seq})"
    )
    return 0


@_store_errors
def cmd_rollback(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.registry.promote import rollback

    r = rollback(args.name, args.alias, args.to, args.reason, args.tracking_uri)
    if r.action == "noop":
        print(f"{args.name}@{r.alias} already is version {r.to_version}; nothing to do")
    else:
        print(f"{args.name}@{r.alias}: v{r.from_version} -> v{r.to_version} (rollback; audit entry {r.seq})")
    return 0


@_store_errors
def cmd_history(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.registry import audit
    from trainwise.registry.history import read_history

    h = read_history(args.name, args.tracking_uri)
    for e in h.reconciled:
        print(
            f"reconciled audit entry {e['seq']} ({e['action']} {e['alias']}: "
            f"v{e['from_version'] or '-'} -> v{e['to_version']}): {e['reconciled']}; "
            "its writer stopped before finishing it",
            file=sys.stderr,
        )
    entries, problems = h.entries, h.problems
    if args.at is not None:
        at_us = audit.parse_time(args.at)
        held = audit.holders_at(entries, at_us)
        if args.json:
            print(json.dumps({"at": audit.iso(at_us), "aliases": held}, indent=2))
        else:
            for alias, v in sorted(held.items()):
                print(f"{args.name}@{alias} at {audit.iso(at_us)}: {'v' + v if v else 'not set'}")
    elif args.json:
        print(json.dumps({"model": args.name, "entries": entries, "problems": problems}, indent=2))
    else:
        for e in entries:
            print(
                f"{e['seq']:>4}  {e['when']}  {e['who']}  {e['action']:<8} {e['alias']}: "
                f"v{e['from_version'] or '-'} -> v{e['to_version']}  "
                f"gate={e['verdict']}  evidence={e['evidence_sha256'][:12] or '-'}  "
                f"[{e['status']}{', reconciled: ' + e['reconciled'] if e['reconciled'] else ''}]  {e['reason']}"
            )
        if not entries:
            print(f"{args.name}: no alias moves recorded")
    for p in problems:
        print(f"warning: audit trail: {p}", file=sys.stderr)
    return 0


@_store_errors
def cmd_card(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.registry.card import build_card
    from trainwise.rundir import write_atomic

    text = build_card(args.name, args.version, args.tracking_uri)
    if args.out:
        write_atomic(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """The `mlflow ui` command line for the store (artifacts of a sqlite store are local files)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]


def cmd_ui(args) -> int:
    # lazy: defers a library module (torch/pandas-heavy) so `trainwise --help` stays fast
    from trainwise.registry.store import check_reachable

    uri = resolve_tracking_uri(args.tracking_uri)
    check_reachable(uri)
    if not uri.startswith("sqlite:"):
        raise RegistryError(f"tracking URI {uri} is a server already: open it in a browser instead of starting a UI")
    cmd = ui_command(uri, args.host, args.port)
    print(" ".join(cmd) if args.dry_run else f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C stops it)")
    return 0 if args.dry_run else subprocess.call(cmd)
