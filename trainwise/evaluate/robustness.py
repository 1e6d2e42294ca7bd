"""Robustness: metrics under input perturbations that fit the workload, and on a shifted split.

- tabular (inputs are standardised numeric columns followed by one-hot columns): Gaussian noise of
  0.5 standard deviations on the numeric columns; feature dropout (10% of features set to 0, which
  is the training mean of a standardised column and "no category" for a one-hot block).
- images (4-D inputs): Gaussian pixel noise (0.1 of the [0, 1] range) and 10% pixel dropout.
- other float inputs: noise of 0.5 of each feature's standard deviation, 10% feature dropout.
- lm: 5% of input bytes replaced by random bytes (the targets are unchanged).
- a shifted split: a workload that sets `workload.shifted` to a Split (data from a later period,
  another site) is evaluated on it too. The built-in workloads have no natural one.

Perturbations are seeded, so the same run gives the same numbers.
"""

from __future__ import annotations

import torch

from trainwise.evaluate.metrics import compute_metrics
from trainwise.evaluate.predict import predict_split
from trainwise.workloads.base import Split

HEADLINE = {"classification": ("accuracy", "f1_macro", "log_loss", "ece"), "lm": ("loss", "bits_per_byte", "next_byte_accuracy")}
NOISE_STD = 0.5       # in standard deviations of a standardised feature
PIXEL_NOISE = 0.1     # pixels live in [0, 1]
DROPOUT = 0.10
BYTE_CORRUPTION = 0.05


def perturbations(split: Split, task: str, info: dict, seed: int = 0) -> dict[str, Split]:
    """name -> perturbed copy of `split` (inputs changed, targets, ids and meta kept)."""
    g = torch.Generator().manual_seed(seed)
    x = split.inputs
    out = {}
    if task == "lm":
        corrupt = torch.rand(x.shape, generator=g) < BYTE_CORRUPTION
        noise = torch.randint(0, 256, x.shape, generator=g)
        out[f"byte_corruption_{BYTE_CORRUPTION:g}"] = torch.where(corrupt, noise, x)
    elif x.is_floating_point():
        if x.dim() == 4:
            out[f"pixel_noise_{PIXEL_NOISE:g}"] = (x + PIXEL_NOISE * torch.randn(x.shape, generator=g)).clamp(0, 1)
        else:
            n_numeric = len(info.get("preprocessing", {}).get("numeric", [])) if "preprocessing" in info else x.shape[1]
            scale = torch.ones(x.shape[1]) if "preprocessing" in info else x.std(dim=0).clamp_min(1e-12)
            mask = torch.zeros(scale.shape, dtype=torch.bool)  # (F,), or (T, C) for sequences: per position and channel
            mask[:n_numeric] = True
            if n_numeric:
                out[f"gaussian_noise_{NOISE_STD:g}sd"] = x + NOISE_STD * scale * mask * torch.randn(x.shape, generator=g)
        keep = (torch.rand(x.shape, generator=g) >= DROPOUT).to(x.dtype)
        out[f"feature_dropout_{DROPOUT:g}"] = x * keep
    return {name: Split(inputs=v, targets=split.targets, ids=split.ids, meta=split.meta) for name, v in out.items()}


def robustness(model, split: Split, task: str, classes, info: dict, clean: dict, shifted: Split | None = None, batch_size: int = 256) -> dict:
    """Headline metrics and their change from `clean` under each perturbation (and the shifted split)."""
    variants = perturbations(split, task, info)
    if shifted is not None:
        variants["shifted_split"] = shifted
    out = {}
    for name, variant in variants.items():
        m = compute_metrics(predict_split(model, variant, task, classes, batch_size), task, classes)
        out[name] = {k: {"value": m[k], "delta": None if m[k] is None or clean.get(k) is None else m[k] - clean[k]} for k in HEADLINE[task]}
        out[name]["n"] = m["n"]
    if shifted is None:
        out["shifted_split"] = {"note": "this workload defines no natural shifted split (set workload.shifted to one)"}
    return out
