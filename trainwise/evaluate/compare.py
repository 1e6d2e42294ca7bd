"""Paired comparison of two prediction sets on the same examples, and the quality gate verdict.

Examples are matched by `id`. Accuracy changes get McNemar's exact test; every metric change gets
a paired bootstrap interval (the same resampled examples for both models); binary AUC changes get
DeLong's test; every slice gets its deltas. Then the gate's rules decide pass or fail
(see `trainwise.evaluate.gate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from trainwise.errors import DataError
from trainwise.evaluate.gate import Gate, Rule, default_gate
from trainwise.evaluate.metrics import PROB_PREFIX, class_arrays
from trainwise.evaluate.resample import ClassificationStats, LMStats, bootstrap_counts, percentile_ci
from trainwise.evaluate.stats import delong, mcnemar_exact

RESERVED = {"id", "label", "pred", "loss", "correct", "n_positions", "position_loss"}
MAX_SLICE_VALUES = 200  # the lm test split has ~100 source-file groups


@dataclass
class Comparison:
    task: str
    n: int
    passed: bool
    failures: list[str]
    deltas: dict
    tests: dict
    slices: dict
    rules: list[dict] = field(default_factory=list)

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
    raise DataError(f"{what} predictions have neither prob_<class> columns (classification) nor loss/correct (lm); columns: {', '.join(map(str, df.columns))}")


def align(baseline: pd.DataFrame, candidate: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames in the same example order, or a DataError if they do not cover the same ids."""
    for what, df in (("baseline", baseline), ("candidate", candidate)):
        if "id" not in df.columns:
            raise DataError(f"{what} predictions have no 'id' column; examples are matched by id")
        if df["id"].duplicated().any():
            raise DataError(f"{what} predictions repeat ids (e.g. {df['id'][df['id'].duplicated()].iloc[0]!r}); each example id must appear once")
    b_ids, c_ids = set(baseline["id"].tolist()), set(candidate["id"].tolist())
    if b_ids != c_ids:
        only_b, only_c = sorted(b_ids - c_ids, key=str), sorted(c_ids - b_ids, key=str)
        raise DataError(f"baseline and candidate predictions cover different examples: {len(only_b)} ids only in the baseline "
                        f"(e.g. {only_b[:3]}), {len(only_c)} only in the candidate (e.g. {only_c[:3]}); compare predictions on the same split")
    baseline = baseline.reset_index(drop=True)
    candidate = candidate.set_index("id").loc[baseline["id"]].reset_index()
    if "label" in baseline.columns and "label" in candidate.columns:
        differ = baseline["label"].astype(str).to_numpy() != candidate["label"].astype(str).to_numpy()
        if differ.any():
            raise DataError(f"baseline and candidate disagree on the true label of {int(differ.sum())} examples (e.g. id {baseline['id'][differ].iloc[0]!r}); they are not predictions on the same data")
    return baseline, candidate


def slice_columns(df: pd.DataFrame) -> list[str]:
    cols = []
    for c in df.columns:
        if c in RESERVED or str(c).startswith(PROB_PREFIX) or df[c].dtype.kind == "f" or df[c].dtype == object and df[c].map(type).eq(list).any():
            continue
        if df[c].astype(str).nunique() <= MAX_SLICE_VALUES:
            cols.append(c)
    return cols


def make_stats(df: pd.DataFrame, task: str, classes: list[str] | None, with_auc: bool = True):
    if task == "lm":
        return LMStats().fit(df["loss"], df["correct"], df["n_positions"] if "n_positions" in df.columns else None)
    label, prob, _ = class_arrays(df, classes)
    return ClassificationStats(with_auc=with_auc).fit(label, prob)


def paired_deltas(base: pd.DataFrame, cand: pd.DataFrame, task: str, classes, n_boot: int, seed: int, with_auc: bool = True) -> tuple[dict, dict]:
    """Point values per model and bootstrap samples of candidate - baseline for every metric.

    Without `with_auc` the AUC is left out of the bootstrap (its statistics grow with the number
    of distinct scores); `paired_tests` still gives DeLong's test for a binary AUC.
    """
    sb, sc = make_stats(base, task, classes, with_auc), make_stats(cand, task, classes, with_auc)
    point_b, point_c = sb.metrics(), sc.metrics()
    samples: dict[str, list] = {m: [] for m in point_b}
    for w in bootstrap_counts(len(base), n_boot, seed):
        mb, mc = sb.metrics(w), sc.metrics(w)
        for m in samples:
            samples[m].append(mc[m] - mb[m])
    out = {}
    for m in point_b:
        b, c = float(point_b[m][0]), float(point_c[m][0])
        s = np.concatenate(samples[m])
        out[m] = {"baseline": b, "candidate": c, "delta": c - b, "ci95": list(percentile_ci(s, 0.95))}
    return out, {m: np.concatenate(v) for m, v in samples.items()}


def compare_predictions(baseline_df: pd.DataFrame, candidate_df: pd.DataFrame, task: str | None = None, gate: Gate | None = None,
                        n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Paired comparison and gate verdict of two prediction frames of the same examples."""
    task = task or infer_task(baseline_df, "baseline")
    for what, df in (("baseline", baseline_df), ("candidate", candidate_df)):
        if infer_task(df, what) != task:
            raise DataError(f"{what} predictions are for task {infer_task(df, what)!r}, expected {task!r}")
    base, cand = align(baseline_df, candidate_df)
    classes = None
    if task == "classification":
        classes = [c[len(PROB_PREFIX):] for c in base.columns if str(c).startswith(PROB_PREFIX)]
        if sorted(classes) != sorted(c[len(PROB_PREFIX):] for c in cand.columns if str(c).startswith(PROB_PREFIX)):
            raise DataError("baseline and candidate predictions have different prob_<class> columns: they predict different classes")
    gate = gate or default_gate()
    with_auc = any(r.metric == "roc_auc" for r in gate.rules)  # bootstrap the AUC only when a rule needs it
    deltas, samples = paired_deltas(base, cand, task, classes, n_boot, seed, with_auc)
    tests = paired_tests(base, cand, task, classes)
    slices, slice_samples = {}, {}
    for col in slice_columns(base):
        slices[col] = []
        for value, idx in base.groupby(base[col].astype(str), sort=True).indices.items():
            d, s = paired_deltas(base.iloc[idx], cand.iloc[idx], task, classes, n_boot, seed + 1, with_auc)
            slices[col].append({"value": value, "n": len(idx), "deltas": d})
            slice_samples[(col, value)] = s
    rules = apply_gate(gate, task, samples, deltas, slices, slice_samples)
    failures = [r["detail"] for r in rules if r["status"] == "fail"]
    return Comparison(task=task, n=len(base), passed=not failures, failures=failures, deltas=deltas, tests=tests, slices=slices, rules=rules)


def paired_tests(base: pd.DataFrame, cand: pd.DataFrame, task: str, classes) -> dict:
    if task == "lm":
        # per-window losses are paired: a paired t-test next to the bootstrap interval
        t = stats.ttest_rel(cand["loss"].to_numpy(np.float64), base["loss"].to_numpy(np.float64))
        return {"paired_t_loss": {"statistic": float(t.statistic), "p_value": float(t.pvalue)}}
    yb, pb, _ = class_arrays(base, classes)
    _, pc, _ = class_arrays(cand, classes)
    tests = {"mcnemar": mcnemar_exact(pb.argmax(1) == yb, pc.argmax(1) == yb)}
    if pb.shape[1] == 2 and 0 < yb.sum() < len(yb):
        tests["delong"] = delong(yb == 1, pb[:, 1], pc[:, 1])  # a = baseline, b = candidate
    return tests


def apply_gate(gate: Gate, task: str, samples: dict, deltas: dict, slices: dict, slice_samples: dict) -> list[dict]:
    out = []
    for rule in gate.rules:
        if rule.task != task:
            out.append({"rule": rule.name, "status": "not applicable", "detail": f"{rule.metric} is a {rule.task} metric"})
        elif rule.scope == "overall":
            out.append(check_rule(rule, samples[rule.metric], deltas[rule.metric], rule.confidence, ""))
        else:
            checked = [(c, e) for c, entries in slices.items() for e in entries if e["n"] >= rule.min_count]
            # Bonferroni over the slices checked: the family-wise false-alarm rate stays <= 1 - confidence
            conf = 1 - (1 - rule.confidence) / max(len(checked), 1)
            results = [check_rule(rule, slice_samples[(c, e["value"])][rule.metric], e["deltas"][rule.metric], conf, f"slice {c}={e['value']} (n={e['n']}): ") for c, e in checked]
            bad = [r for r in results if r["status"] == "fail"]
            status = "fail" if bad else ("pass" if results else "not applicable")
            detail = "; ".join(r["detail"] for r in bad) if bad else f"{len(results)} slices checked"
            out.append({"rule": rule.name, "status": status, "detail": f"{rule.name}: {detail}" if bad else detail, "slices_checked": len(results)})
    return out


def check_rule(rule: Rule, delta_samples: np.ndarray, delta: dict, confidence: float, where: str) -> dict:
    """Fail when the one-sided lower confidence bound of the worsening exceeds the tolerance."""
    sign = -1.0 if rule.higher_is_better else 1.0
    worse = sign * delta_samples[np.isfinite(delta_samples)]
    if len(worse) == 0 or delta["baseline"] != delta["baseline"]:
        return {"rule": rule.name, "status": "not applicable", "detail": f"{where}{rule.metric} is undefined on these examples"}
    lower = float(np.quantile(worse, 1 - confidence))
    point = sign * delta["delta"]
    status = "fail" if lower > rule.tolerance else "pass"
    detail = (f"{where}{rule.metric} {'dropped' if rule.higher_is_better else 'rose'} by {point:.4f} "
              f"({confidence:.1%} lower bound {lower:.4f} {'>' if status == 'fail' else '<='} tolerance {rule.tolerance:g})")
    return {"rule": rule.name, "status": status, "detail": detail, "worsening": point, "lower_bound": lower}


# ---------------------------------------------------------------------------------------------
# directories


def load_predictions(path: str | Path) -> pd.DataFrame:
    """predictions.parquet of an evaluation directory, a run directory (its eval/), or a file.

    A run directory that was never evaluated is evaluated first (on its test split).
    """
    p = Path(path)
    if p.is_file():
        return read_predictions(p)
    for candidate in (p / "predictions.parquet", p / "eval" / "predictions.parquet"):
        if candidate.is_file():
            return read_predictions(candidate)
    if (p / "model").is_dir() and (p / "config.toml").is_file():
        from trainwise.evaluate.evaluate import evaluate_run

        evaluate_run(p)
        return read_predictions(p / "eval" / "predictions.parquet")
    raise DataError(f"{p} is neither an evaluation directory (predictions.parquet) nor a run directory (model/ and config.toml)")


def read_predictions(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path} is not a readable predictions table: {type(e).__name__}: {e}") from None


def compare_dirs(baseline: str | Path, candidate: str | Path, gate: Gate | None = None, n_boot: int = 1000) -> Comparison:
    """compare_predictions on two run or evaluation directories (or predictions files)."""
    return compare_predictions(load_predictions(baseline), load_predictions(candidate), None, gate, n_boot)
