"""Paired comparison of two prediction sets on the same examples, and the quality gate verdict.

Examples are matched by `id`. Accuracy changes get McNemar's exact test; every metric change gets
a paired interval (`trainwise.evaluate.intervals`: Agresti-Min for accuracy, paired t for other
means, the paired bootstrap's standard error for the rest); binary AUC changes get DeLong's
test; every slice gets its deltas. Then each gate rule is pass, fail, inconclusive or not
applicable, and so is the gate (see `trainwise.evaluate.gate`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from trainwise.errors import DataError
from trainwise.evaluate.evaluate import evaluate_run
from trainwise.evaluate.gate import Gate, Rule, combine_statuses, default_gate, describe_needed, judge_rule
from trainwise.evaluate.intervals import Interval, bootstrap_se, paired_interval
from trainwise.evaluate.metrics import PROB_PREFIX, class_arrays
from trainwise.evaluate.resample import ClassificationStats, LMStats, bootstrap_counts
from trainwise.evaluate.stats import delong, mcnemar_exact

RESERVED = {"id", "label", "pred", "loss", "correct", "n_positions", "position_loss"}
MAX_SLICE_VALUES = 200  # the lm test split has ~100 source-file groups


@dataclass
class Comparison:
    """verdict: pass, fail or inconclusive (`passed` is verdict == "pass"); failures and
    inconclusive: the details of the rules with that status; settle: what would settle an
    inconclusive verdict (None otherwise)."""

    task: str
    n: int
    passed: bool
    failures: list[str]
    deltas: dict
    tests: dict
    slices: dict
    rules: list[dict] = field(default_factory=list)
    verdict: str = "pass"
    inconclusive: list[str] = field(default_factory=list)
    settle: str | None = None
    split: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: undefined values (NaN) become None."""
        return _json_safe(asdict(self))


def _json_safe(o):
    if isinstance(o, dict):
        return {k: _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


def infer_task(df: pd.DataFrame, what: str) -> str:
    if any(str(c).startswith(PROB_PREFIX) for c in df.columns):
        return "classification"
    if {"loss", "correct"} <= set(df.columns):
        return "lm"
    raise DataError(
        f"{what} predictions have neither prob_<class> columns (classification) nor loss/correct (lm); columns: "
        f"{', '.join(map(str, df.columns))}"
    )


def align(baseline: pd.DataFrame, candidate: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames in the same example order, or a DataError if they do not cover the same ids."""
    for what, df in (("baseline", baseline), ("candidate", candidate)):
        if "id" not in df.columns:
            raise DataError(f"{what} predictions have no 'id' column; examples are matched by id")
        if df["id"].duplicated().any():
            raise DataError(
                f"{what} predictions repeat ids (e.g. {df['id'][df['id'].duplicated()].iloc[0]!r}); each example id "
                "must appear once"
            )
    b_ids, c_ids = set(baseline["id"].tolist()), set(candidate["id"].tolist())
    if b_ids != c_ids:
        only_b, only_c = sorted(b_ids - c_ids, key=str), sorted(c_ids - b_ids, key=str)
        raise DataError(
            f"baseline and candidate predictions cover different examples: {len(only_b)} ids only in the baseline "
            f"(e.g. {only_b[:3]}), {len(only_c)} only in the candidate (e.g. {only_c[:3]}); compare predictions on the "
            "same split"
        )
    baseline = baseline.reset_index(drop=True)
    candidate = candidate.set_index("id").loc[baseline["id"]].reset_index()
    if "label" in baseline.columns and "label" in candidate.columns:
        differ = baseline["label"].astype(str).to_numpy() != candidate["label"].astype(str).to_numpy()
        if differ.any():
            raise DataError(
                f"baseline and candidate disagree on the true label of {int(differ.sum())} examples (e.g. id "
                f"{baseline['id'][differ].iloc[0]!r}); they are not predictions on the same data"
            )
    return baseline, candidate


def slice_columns(df: pd.DataFrame) -> list[str]:
    cols = []
    for c in df.columns:
        if (
            c in RESERVED
            or str(c).startswith(PROB_PREFIX)
            or df[c].dtype.kind == "f"
            or df[c].dtype == object
            and df[c].map(type).eq(list).any()
        ):
            continue
        if df[c].astype(str).nunique() <= MAX_SLICE_VALUES:
            cols.append(c)
    return cols


def make_stats(df: pd.DataFrame, task: str, classes: list[str] | None, with_auc: bool = True):
    if task == "lm":
        return LMStats().fit(df["loss"], df["correct"], df["n_positions"] if "n_positions" in df.columns else None)
    label, prob, _ = class_arrays(df, classes)
    return ClassificationStats(with_auc=with_auc).fit(label, prob)


def paired_deltas(
    base: pd.DataFrame, cand: pd.DataFrame, task: str, classes, n_boot: int, seed: int, with_auc: bool = True
) -> tuple[dict, dict[str, Interval]]:
    """Point values per model and the interval of candidate - baseline for every metric.

    Means of per-example values get exact paired intervals; the other metrics the paired
    bootstrap (the same resampled examples for both models). Without `with_auc` the AUC is left
    out (its statistics grow with the number of distinct scores); `paired_tests` still gives
    DeLong's test for a binary AUC.
    """
    sb, sc = make_stats(base, task, classes, with_auc), make_stats(cand, task, classes, with_auc)
    point_b, point_c = sb.metrics(), sc.metrics()
    means_b, means_c = sb.mean_metrics(), sc.mean_metrics()
    n = len(base)
    samples = bootstrap_changes(sb, sc, [m for m in point_b if m not in means_b], n, n_boot, seed)
    deltas, intervals = {}, {}
    for m in point_b:
        b, c = float(point_b[m][0]), float(point_c[m][0])
        if m in means_b:
            iv = paired_interval(m, means_b[m][0], means_c[m][0], means_b[m][1])
        else:
            iv = bootstrap_se(c - b, samples[m], n)
        iv = Interval(float(iv.point), float(iv.center), float(iv.se), float(iv.df), iv.method)
        intervals[m] = iv
        deltas[m] = {
            "baseline": b,
            "candidate": c,
            "delta": c - b,
            "ci95": [float(x) for x in iv.bounds(0.975)],
            "se": iv.se,
            "interval": iv.method,
        }
    return deltas, intervals


def bootstrap_changes(sb, sc, metrics: list[str], n: int, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Paired bootstrap replicates of candidate - baseline for `metrics` (none: no resampling)."""
    if not metrics:
        return {}
    reps: dict[str, list] = {m: [] for m in metrics}
    for w in bootstrap_counts(n, n_boot, seed):
        mb, mc = sb.metrics(w), sc.metrics(w)
        for m in metrics:
            reps[m].append(mc[m] - mb[m])
    return {m: np.concatenate(v) for m, v in reps.items()}


def compare_predictions(
    baseline_df: pd.DataFrame,
    candidate_df: pd.DataFrame,
    task: str | None = None,
    gate: Gate | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    split: str | None = None,
) -> Comparison:
    """Paired comparison and gate verdict of two prediction frames of the same examples.

    `split` (val/test) only shapes the advice of an inconclusive verdict.
    """
    # Over 60 lines on purpose: the comparison in order (align, paired deltas and tests, per-slice deltas, the gate's
    # verdict), then the Comparison it returns; each statistic is a function already.
    task = task or infer_task(baseline_df, "baseline")
    for what, df in (("baseline", baseline_df), ("candidate", candidate_df)):
        if infer_task(df, what) != task:
            raise DataError(f"{what} predictions are for task {infer_task(df, what)!r}, expected {task!r}")
    base, cand = align(baseline_df, candidate_df)
    classes = None
    if task == "classification":
        classes = [c[len(PROB_PREFIX) :] for c in base.columns if str(c).startswith(PROB_PREFIX)]
        if sorted(classes) != sorted(c[len(PROB_PREFIX) :] for c in cand.columns if str(c).startswith(PROB_PREFIX)):
            raise DataError(
                "baseline and candidate predictions have different prob_<class> columns: they predict different classes"
            )
    gate = gate or default_gate()
    with_auc = any(r.metric == "roc_auc" for r in gate.rules)  # bootstrap the AUC only when a rule needs it
    deltas, intervals = paired_deltas(base, cand, task, classes, n_boot, seed, with_auc)
    tests = paired_tests(base, cand, task, classes)
    slices, slice_intervals = {}, {}
    for col in slice_columns(base):
        slices[col] = []
        for value, idx in base.groupby(base[col].astype(str), sort=True).indices.items():
            d, iv = paired_deltas(base.iloc[idx], cand.iloc[idx], task, classes, n_boot, seed + 1, with_auc)
            slices[col].append({"value": value, "n": len(idx), "deltas": d})
            slice_intervals[(col, value)] = iv
    rules = apply_gate(gate, task, len(base), deltas, intervals, slices, slice_intervals)
    verdict = combine_statuses(r["status"] for r in rules)
    if verdict == "not applicable":  # nothing was checked: too little evidence is never a pass
        verdict = "inconclusive"
        rules.append(
            {
                "rule": "gate",
                "status": "inconclusive",
                "detail": f"no rule of the gate applies to these {task} predictions",
            }
        )
    return Comparison(
        task=task,
        n=len(base),
        passed=verdict == "pass",
        failures=[r["detail"] for r in rules if r["status"] == "fail"],
        deltas=deltas,
        tests=tests,
        slices=slices,
        rules=rules,
        verdict=verdict,
        inconclusive=[r["detail"] for r in rules if r["status"] == "inconclusive"],
        settle=settle_advice(rules, len(base), split) if verdict == "inconclusive" else None,
        split=split,
    )


def paired_tests(base: pd.DataFrame, cand: pd.DataFrame, task: str, classes) -> dict:
    if task == "lm":
        # per-window losses are paired: the paired t-test that goes with the paired t interval of the loss change
        t = stats.ttest_rel(cand["loss"].to_numpy(np.float64), base["loss"].to_numpy(np.float64))
        return {"paired_t_loss": {"statistic": float(t.statistic), "p_value": float(t.pvalue)}}
    yb, pb, _ = class_arrays(base, classes)
    _, pc, _ = class_arrays(cand, classes)
    tests = {"mcnemar": mcnemar_exact(pb.argmax(1) == yb, pc.argmax(1) == yb)}
    if pb.shape[1] == 2 and 0 < yb.sum() < len(yb):
        tests["delong"] = delong(yb == 1, pb[:, 1], pc[:, 1])  # a = baseline, b = candidate
    return tests


def apply_gate(
    gate: Gate, task: str, n: int, deltas: dict, intervals: dict, slices: dict, slice_intervals: dict
) -> list[dict]:
    out = []
    for rule in gate.rules:
        if rule.task != task:
            out.append(
                {
                    "rule": rule.name,
                    "metric": rule.metric,
                    "status": "not applicable",
                    "detail": f"{rule.metric} is a {rule.task} metric",
                }
            )
        elif rule.scope == "overall":
            out.append(check_rule(rule, deltas[rule.metric], intervals[rule.metric], rule.confidence, n, ""))
        else:
            out.append(check_slices(rule, slices, slice_intervals))
    return out


def check_rule(rule: Rule, delta: dict, change: Interval, confidence: float, n: int, where: str) -> dict:
    """pass / fail / inconclusive of one rule on one set of examples (see `gate.judge_rule`)."""
    if delta["baseline"] != delta["baseline"] or delta["candidate"] != delta["candidate"]:
        return {
            "rule": rule.name,
            "metric": rule.metric,
            "status": "not applicable",
            "detail": f"{where}{rule.metric} is undefined on these examples",
        }
    return judge_rule(rule, change, confidence, n, where)


def check_slices(rule: Rule, slices: dict, slice_intervals: dict) -> dict:
    """A slice rule: every slice with n >= min_count judged, Bonferroni-corrected, verdicts combined."""
    checked = [(c, e) for c, entries in slices.items() for e in entries if e["n"] >= rule.min_count]
    # Bonferroni over the slices checked: the family-wise error rate stays <= 1 - confidence
    conf = 1 - (1 - rule.confidence) / max(len(checked), 1)
    results = [
        check_rule(
            rule,
            e["deltas"][rule.metric],
            slice_intervals[(c, e["value"])][rule.metric],
            conf,
            e["n"],
            f"slice {c}={e['value']} (n={e['n']}): ",
        )
        | {"slice": f"{c}={e['value']}"}
        for c, e in checked
    ]
    status = combine_statuses(r["status"] for r in results)
    named = [r["detail"] for r in results if r["status"] == status] if status in ("fail", "inconclusive") else []
    if status == "pass":
        worst = max((r for r in results if r["status"] == "pass"), key=lambda r: r["upper_bound"])
        detail = (
            f"{len(results)} slices checked at {conf:.2%} confidence each, all within tolerance; closest "
            f"{worst['slice']} (n={worst['n']}): bounds of the worsening [{worst['lower_bound']:+.4f}, "
            f"{worst['upper_bound']:+.4f}], upper <= {rule.tolerance:g}"
        )
    elif named:
        detail = "; ".join(named[:5]) + (f"; and {len(named) - 5} more slices" if len(named) > 5 else "")
    else:
        detail = f"no slice has n >= {rule.min_count} (and a defined {rule.metric})"
    keep = ("slice", "n", "status", "worsening", "lower_bound", "upper_bound", "n_needed")
    return {
        "rule": rule.name,
        "metric": rule.metric,
        "status": status,
        "detail": detail,
        "confidence": conf,
        "slices_checked": len(results),
        "slices": [{k: r[k] for k in keep if k in r} for r in results],
    }


def settle_advice(rules: list[dict], n: int, split: str | None) -> str:
    """What would settle an inconclusive gate: the examples its hardest inconclusive rule needs."""
    factors = []
    for r in rules:
        parts = r.get("slices") or [r]
        factors += [
            p["n_needed"] / p["n"] for p in parts if p.get("status") == "inconclusive" and p.get("n_needed") is not None
        ]
    if not factors:
        return "no rule could be checked on these predictions: compare on examples the gate's rules apply to"
    needed = max(factors) * n
    text = describe_needed(needed if np.isfinite(needed) else None, n).replace(
        "settle it", "settle every inconclusive rule"
    )
    if split == "val":
        text += (
            "; these are val-split predictions: evaluate both runs on the test split (`trainwise evaluate RUN_DIR "
            "--split test`) or a larger set"
        )
    return text


# ---------------------------------------------------------------------------------------------
# directories


def locate_predictions(path: str | Path) -> Path:
    """predictions.parquet of an evaluation directory, a run directory (its eval/), or a file.

    A run directory that was never evaluated is evaluated first (on its test split).
    """
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (p / "predictions.parquet", p / "eval" / "predictions.parquet"):
        if candidate.is_file():
            return candidate
    if (p / "model").is_dir() and (p / "config.toml").is_file():
        evaluate_run(p)
        return p / "eval" / "predictions.parquet"
    raise DataError(
        f"{p} is neither an evaluation directory (predictions.parquet) nor a run directory (model/ and config.toml)"
    )


def load_predictions(path: str | Path) -> pd.DataFrame:
    return read_predictions(locate_predictions(path))


def predictions_split(predictions_file: Path) -> str | None:
    """The split (val/test) `trainwise evaluate` recorded next to a predictions file, if any."""
    try:
        return json.loads((predictions_file.parent / "metrics.json").read_text()).get("split")
    except (OSError, ValueError, AttributeError):
        return None


def read_predictions(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path} is not a readable predictions table: {type(e).__name__}: {e}") from None


def compare_dirs(
    baseline: str | Path, candidate: str | Path, gate: Gate | None = None, n_boot: int = 1000
) -> Comparison:
    """compare_predictions on two run or evaluation directories (or predictions files)."""
    files = [locate_predictions(baseline), locate_predictions(candidate)]
    splits = {predictions_split(f) for f in files} - {None}
    return compare_predictions(
        read_predictions(files[0]),
        read_predictions(files[1]),
        None,
        gate,
        n_boot,
        split=splits.pop() if len(splits) == 1 else None,
    )
