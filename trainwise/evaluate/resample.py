"""Fast bootstrap of classification and lm metrics: every metric is a function of weighted sums.

A bootstrap replicate is a vector of counts w (how often each example was drawn). Every metric
reported here is a function of a few linear statistics of w: the confusion matrix, summed
per-example log loss and Brier score, per-bin counts/confidences/hits for ECE, and per-score-group
positive/negative counts for the AUC (Mann-Whitney with midranks for ties). So we build one sparse
design matrix D (examples x statistics) once, and `W @ D` gives the statistics of many replicates
in one sparse product. With W = ones the functions give the point estimates, which equal
scikit-learn's on the same predictions (tests/evaluate/test_metrics.py).

Paired comparison draws the same W for the baseline and the candidate (the same examples), which
is the paired bootstrap of Efron & Tibshirani 1993, ch. 16.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import sparse

from trainwise.evaluate.calibration import N_BINS, equal_width_bin

LL_EPS = np.finfo(np.float64).eps  # sklearn's log_loss clips float64 probabilities to [eps, 1 - eps]


def bootstrap_counts(n: int, n_boot: int, seed: int = 0, chunk_cells: int = 8_000_000) -> Iterator[np.ndarray]:
    """Yield (R, n) matrices of draw counts, n_boot rows in all, chunked to bound memory."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_cells // max(n, 1))
    done = 0
    while done < n_boot:
        r = min(per_chunk, n_boot - done)
        idx = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=r * n).reshape(r, n).astype(np.float64)
        done += r


class ClassificationStats:
    """The sparse design matrix of one prediction set; `metrics(W)` gives each replicate's metrics.

    label: (n,) class ids; prob: (n, K) probabilities. Learned attributes end in `_`.
    """

    def __init__(self, n_bins: int = N_BINS, with_auc: bool = True, auc_bins: int | None = None):
        self.n_bins = n_bins
        self.with_auc = with_auc
        self.auc_bins = auc_bins  # quantile-bin the scores for the AUC (fewer statistics); None = exact

    def fit(self, label: np.ndarray, prob: np.ndarray) -> ClassificationStats:
        n, k = prob.shape
        label = np.asarray(label, dtype=np.int64)
        pred = prob.argmax(axis=1)
        conf = prob.max(axis=1)
        rows = np.arange(n)
        blocks, values, cols, offset = [], [], [], 0

        def add(col_index: np.ndarray, value: np.ndarray, width: int) -> slice:
            nonlocal offset
            blocks.append(rows)
            cols.append(col_index + offset)
            values.append(np.broadcast_to(value, (n,)).astype(np.float64))
            s = slice(offset, offset + width)
            offset += width
            return s

        self.k_ = k
        self.cm_ = add(label * k + pred, 1.0, k * k)
        p_true = np.clip(prob[rows, label].astype(np.float64), LL_EPS, 1 - LL_EPS)
        self.ll_ = add(np.zeros(n, np.int64), -np.log(p_true), 1)
        onehot = np.zeros_like(prob, dtype=np.float64)
        onehot[rows, label] = 1.0
        brier = ((prob - onehot) ** 2).sum(axis=1) * (0.5 if k == 2 else 1.0)  # sklearn's scale_by_half="auto"
        self.brier_ = add(np.zeros(n, np.int64), brier, 1)
        b = equal_width_bin(conf, self.n_bins)
        self.bin_n_ = add(b, 1.0, self.n_bins)
        self.bin_conf_ = add(b, conf, self.n_bins)
        self.bin_hit_ = add(b, (pred == label).astype(np.float64), self.n_bins)
        self.auc_ = []
        if self.with_auc:
            for c in [1] if k == 2 else range(k):  # binary: the positive class; else one-vs-rest
                group = score_groups(prob[:, c], self.auc_bins)
                g = int(group.max()) + 1
                is_pos = label == c
                self.auc_.append(add(group + np.where(is_pos, 0, g), 1.0, 2 * g))
        self.design_ = sparse.csr_matrix(
            (np.concatenate(values), (np.concatenate(blocks), np.concatenate(cols))), shape=(n, offset)
        )
        self.per_example_ = {"accuracy": pred == label, "log_loss": -np.log(p_true), "brier": brier}
        return self

    def mean_metrics(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Metrics that are means of per-example values: {metric: (values (n,), weights or None)}.

        Paired changes of these get exact paired intervals (`trainwise.evaluate.intervals`)
        instead of the bootstrap.
        """
        return {m: (v, None) for m, v in self.per_example_.items()}

    def stats(self, weights: np.ndarray | None = None) -> np.ndarray:
        """(R, n_statistics) statistics; weights (R, n) draw counts, or None for the sample itself."""
        if weights is None:
            return np.asarray(self.design_.sum(axis=0))
        return np.asarray((self.design_.T @ weights.T).T)

    def metrics(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        s = self.stats(weights)
        total = s[:, self.bin_n_].sum(axis=1)
        out = confusion_metrics(s[:, self.cm_].reshape(-1, self.k_, self.k_))
        out["log_loss"] = s[:, self.ll_][:, 0] / total
        out["brier"] = s[:, self.brier_][:, 0] / total
        out["ece"] = ece_from_sums(s[:, self.bin_n_], s[:, self.bin_conf_], s[:, self.bin_hit_])
        if self.auc_:
            aucs = np.stack([auc_from_groups(s[:, cols]) for cols in self.auc_], axis=1)
            with np.errstate(invalid="ignore"):
                out["roc_auc"] = aucs.mean(axis=1)  # NaN when some class has no positives or no negatives
        return out


def score_groups(score: np.ndarray, n_groups: int | None) -> np.ndarray:
    """Tie groups in ascending score order; with `n_groups`, at most that many quantile bins.

    Binning treats pairs within a bin as ties, which pulls the AUC slightly towards 0.5 (by at most
    about 1 / n_groups); callers shift the bootstrap replicates by the exact-minus-binned point value.
    """
    if n_groups is None or len(score) <= n_groups:
        return np.unique(score, return_inverse=True)[1]
    edges = np.unique(np.quantile(score, np.linspace(0, 1, n_groups + 1)[1:-1]))
    return np.searchsorted(edges, score, side="right")


def confusion_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, balanced accuracy, macro precision/recall/F1 of (R, K, K) confusion matrices.

    sklearn conventions: precision/recall/F1 of a class with no predictions/support are 0
    (zero_division=0), macro averages run over all K classes, balanced accuracy over the classes
    present in the true labels.
    """
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted, total = cm.sum(axis=2), cm.sum(axis=1), cm.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(predicted + support > 0, 2 * tp / (predicted + support), 0.0)
        balanced = (recall * (support > 0)).sum(axis=1) / (support > 0).sum(axis=1)
        return {
            "accuracy": tp.sum(axis=1) / total,
            "balanced_accuracy": balanced,
            "precision_macro": precision.mean(axis=1),
            "recall_macro": recall.mean(axis=1),
            "f1_macro": f1.mean(axis=1),
        }


def ece_from_sums(count: np.ndarray, conf_sum: np.ndarray, hit_sum: np.ndarray) -> np.ndarray:
    """l1 ECE of (R, B) per-bin sums: sum_b |hits_b - conf_b| / n."""
    return np.abs(hit_sum - conf_sum).sum(axis=1) / count.sum(axis=1)


def auc_from_groups(s: np.ndarray) -> np.ndarray:
    """AUC from (R, 2G) positive/negative counts per tie group in ascending score (Mann-Whitney)."""
    g = s.shape[1] // 2
    pos, neg = s[:, :g], s[:, g:]
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)


def percentile_ci(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap samples (NaN replicates ignored)."""
    a = (1 - confidence) / 2
    s = samples[np.isfinite(samples)]
    if len(s) == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(s, [a, 1 - a])
    return (float(lo), float(hi))


class LMStats:
    """Per-window lm statistics (summed loss, hits and positions) for the bootstrap over windows."""

    def fit(self, loss: np.ndarray, correct: np.ndarray, n_positions: np.ndarray | None = None) -> LMStats:
        w = np.ones(len(loss)) if n_positions is None else np.asarray(n_positions, np.float64)
        self.design_ = np.stack(
            [w * np.asarray(loss, np.float64), w * np.asarray(correct, np.float64), w], axis=1
        )  # (n, 3)
        self.weights_ = None if n_positions is None else w
        self.loss_, self.correct_ = np.asarray(loss, np.float64), np.asarray(correct, np.float64)
        return self

    def mean_metrics(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Every lm metric is a (position-weighted) mean of per-window values: {metric: (values, weights)}."""
        return {
            "loss": (self.loss_, self.weights_),
            "bits_per_byte": (self.loss_ / np.log(2), self.weights_),
            "next_byte_accuracy": (self.correct_, self.weights_),
        }

    def metrics(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        s = self.design_.sum(axis=0)[None] if weights is None else weights @ self.design_
        loss = s[:, 0] / s[:, 2]
        return {"loss": loss, "bits_per_byte": loss / np.log(2), "next_byte_accuracy": s[:, 1] / s[:, 2]}
