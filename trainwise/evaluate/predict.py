"""Run a trained model over a split and return the predictions frame (predictions.parquet).

Classification: one row per example with `id`, `label`, `pred` (class names) and `prob_<class>`
(softmax in fp32, whatever precision the model was trained in), plus the split's meta columns,
which are the slices. lm: one row per window with `id`, `loss` (mean per-byte cross-entropy in
nats), `correct` (share of next bytes predicted right), `n_positions`, `position_loss` (per-position
loss as float16, 2 bytes a position, for the loss-by-position plot) and the meta columns (`group`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from trainwise.workloads.base import Split


def predict_split(
    model: nn.Module, split: Split, task: str, classes: list[str] | None = None, batch_size: int = 256
) -> pd.DataFrame:
    """The predictions frame of `model` on `split` (eval mode, no gradients)."""
    model.eval()
    device = next(model.parameters()).device
    outs = []
    # no_grad, not inference_mode: torchao's Float8 training tensors cannot run under inference mode (aten.to.dtype)
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            x = split.inputs[start : start + batch_size].to(device)
            y = split.targets[start : start + batch_size].to(device)
            logits = model(x).float()  # fp32 softmax: low-precision probabilities lose calibration bits
            outs.append(_lm_batch(logits, y) if task == "lm" else F.softmax(logits, dim=-1).cpu().numpy())
    if task == "lm":
        frame = _lm_frame(outs, split)
    else:
        frame = _classification_frame(
            np.concatenate(outs) if outs else np.zeros((0, len(classes or []))), split, classes
        )
    if split.meta is not None:
        meta = split.meta.reset_index(drop=True)
        frame = pd.concat([frame, meta[[c for c in meta.columns if c not in frame.columns]]], axis=1)
    return frame


def _lm_batch(logits: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    # (B, T, V) logits, (B, T) targets -> per-position loss and hit, both (B, T)
    loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    hit = logits.argmax(dim=-1) == targets
    return loss.cpu().numpy(), hit.cpu().numpy()


def _lm_frame(outs: list, split: Split) -> pd.DataFrame:
    loss = np.concatenate([o[0] for o in outs])
    hit = np.concatenate([o[1] for o in outs])
    return pd.DataFrame(
        {
            "id": np.asarray(split.ids),
            "loss": loss.mean(axis=1).astype(np.float64),
            "correct": hit.mean(axis=1).astype(np.float64),
            "n_positions": np.full(len(loss), loss.shape[1], dtype=np.int64),
            "position_loss": list(loss.astype(np.float16)),
        }
    )


def _classification_frame(prob: np.ndarray, split: Split, classes: list[str] | None) -> pd.DataFrame:
    classes = [str(c) for c in classes] if classes else [str(i) for i in range(prob.shape[1])]
    if len(classes) != prob.shape[1]:
        raise ValueError(f"the model outputs {prob.shape[1]} classes but {len(classes)} class names were given")
    names = np.asarray(classes, dtype=object)
    frame = pd.DataFrame(
        {"id": np.asarray(split.ids), "label": names[split.targets.cpu().numpy()], "pred": names[prob.argmax(axis=1)]}
    )
    prob = prob.astype(np.float64)
    prob /= prob.sum(axis=1, keepdims=True)  # rows sum to 1 in float64 (sklearn's log_loss checks)
    probs = pd.DataFrame(prob, columns=[f"prob_{c}" for c in classes])
    return pd.concat([frame, probs], axis=1)
