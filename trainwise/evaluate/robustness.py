"""Robustness: metrics under input perturbations that fit the model's declared input, and on a shifted split.

The perturbations follow the input spec (model.json `input`, see trainwise.workloads.inputs):

- table: applied to the raw columns, then through the fitted preprocessing, as a request would be:
  Gaussian noise of 0.5 of each numeric column's training standard deviation; and missing values
  in 10% of the cells: a numeric cell takes the training mean (mean imputation), a categorical one
  becomes "<missing>" (a trained category when the training data had missing values, as the file
  workload encodes them, else an unknown category: all zeros).
- tensor (float dtypes): Gaussian noise of 0.1 of the declared value_range (clamped to it) or,
  without a range, of 0.5 of each element's standard deviation over the evaluated split; and
  dropout: 10% of the elements set to 0 (to the range's nearest value when 0 is outside it).
- tokens: 5% of the input ids replaced by random ids below vocab_size (targets unchanged);
  `byte_corruption_0.05` for a byte-level model (vocab 256), `token_corruption_0.05` otherwise.
- a shifted split: a workload that sets `Workload(..., shifted=Split(...))` (data from a later
  period, another site) is evaluated on it too.

Where no perturbation fits (no input spec, an integer tensor, inputs that contradict the spec),
the result says `"skipped": "<why>"` instead of numbers. Perturbations are seeded, so the same run
gives the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from trainwise.evaluate.metrics import compute_metrics
from trainwise.evaluate.predict import predict_split
from trainwise.workloads.base import Split
from trainwise.workloads.inputs import table_width
from trainwise.workloads.tabular import apply_preprocessing

HEADLINE = {
    "classification": ("accuracy", "f1_macro", "log_loss", "ece"),
    "lm": ("loss", "bits_per_byte", "next_byte_accuracy"),
}
NOISE_SD = 0.5  # in standard deviations of a column or element
NOISE_RANGE = 0.1  # as a share of a declared value_range (pixels in [0, 1]: 0.1)
DROPOUT = 0.10
MISSING = 0.10
TOKEN_CORRUPTION = 0.05
MISSING_CATEGORY = "<missing>"  # what trainwise.workloads.user fills missing categorical cells with
UNKNOWN_CATEGORY = "<not a trained category>"  # an all-zero one-hot block decodes to this, and encodes back to zeros


class DoesNotFit(Exception):
    """No perturbation fits these inputs; the message says why (it becomes `skipped`)."""


def perturbations(split: Split, spec: dict | None, seed: int = 0) -> dict[str, Split]:
    """name -> perturbed copy of `split` (inputs changed; targets, ids and meta kept). Raises DoesNotFit."""
    if spec is None:
        raise DoesNotFit(
            "the model declares no input (model.json has no 'input'), so no perturbation is known to fit it; declare "
            "it with Workload(..., input=tensor_input(shape, dtype)) (or tokens_input/table_input) and train again"
        )
    g = torch.Generator().manual_seed(seed)
    make = {"table": table_perturbations, "tensor": tensor_perturbations, "tokens": token_perturbations}[spec["kind"]]
    return {
        name: Split(inputs=x, targets=split.targets, ids=split.ids, meta=split.meta)
        for name, x in make(split.inputs, spec, g).items()
    }


def table_perturbations(x: torch.Tensor, spec: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    prep = spec["preprocessing"]
    if x.dim() != 2 or x.shape[1] != table_width(prep) or not x.is_floating_point():
        raise DoesNotFit(
            f"the split's inputs ({x.dtype}, shape {list(x.shape)}) are not the {table_width(prep)} features "
            "the table's preprocessing makes, so its raw columns cannot be recovered"
        )
    raw = raw_columns(prep, x)
    n = len(raw)
    noisy, missing = raw.copy(), raw.copy()
    for col in prep["numeric"]:
        noisy[col["name"]] = raw[col["name"]] + NOISE_SD * col["scale"] * _randn(n, g).numpy()
        missing.loc[_mask(n, MISSING, g), col["name"]] = col["mean"]
    for col in prep["categorical"]:
        missing.loc[_mask(n, MISSING, g), col["name"]] = MISSING_CATEGORY
    out = {}
    if prep["numeric"]:
        out[f"gaussian_noise_{NOISE_SD:g}sd"] = torch.from_numpy(apply_preprocessing(prep, noisy))
    out[f"missing_values_{MISSING:g}"] = torch.from_numpy(apply_preprocessing(prep, missing))
    return out


def raw_columns(prep: dict, x: torch.Tensor) -> pd.DataFrame:
    """Invert the fitted preprocessing: standardised numbers back to raw values, one-hot blocks back to
    categories (an all-zero block, an unknown category in the original row, stays unknown)."""
    z = x.double().numpy()
    frame, start = {}, 0
    for col in prep["numeric"]:
        frame[col["name"]] = z[:, start] * col["scale"] + col["mean"]
        start += 1
    for col in prep["numeric"]:  # missing indicators of imputed columns: the raw cell was missing
        if col.get("indicator"):
            frame[col["name"]] = np.where(z[:, start] > 0.5, np.nan, frame[col["name"]])
            start += 1
    for col in prep["categorical"]:
        block = z[:, start : start + len(col["categories"])]
        cats = np.asarray(col["categories"] + [UNKNOWN_CATEGORY], dtype=object)
        frame[col["name"]] = cats[np.where(block.max(axis=1) > 0.5, block.argmax(axis=1), len(col["categories"]))]
        start += len(col["categories"])
    return pd.DataFrame(frame)


def tensor_perturbations(x: torch.Tensor, spec: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    if list(x.shape[1:]) != spec["shape"]:
        raise DoesNotFit(f"the split's examples have shape {list(x.shape[1:])} but the model declares {spec['shape']}")
    if not x.is_floating_point():
        raise DoesNotFit(
            f"the input is an integer tensor ({spec['dtype']}): Gaussian noise and dropout do not apply to it "
            "(declare tokens_input(vocab_size, context) if these are token ids)"
        )
    vr = spec.get("value_range")
    xf = x.double()
    if vr:
        low, high = vr
        noisy = (xf + NOISE_RANGE * (high - low) * _randn(x.shape, g)).clamp(low, high)
        noise_name = f"gaussian_noise_{NOISE_RANGE:g}_of_range"
    else:
        sd = xf.std(dim=0, correction=0) if len(x) > 1 else torch.zeros(x.shape[1:], dtype=torch.float64)  # per element
        noisy = xf + NOISE_SD * sd * _randn(x.shape, g)
        noise_name = f"gaussian_noise_{NOISE_SD:g}sd"
    zero = min(max(0.0, vr[0]), vr[1]) if vr else 0.0
    dropped = torch.where(torch.rand(x.shape, generator=g) < DROPOUT, torch.full_like(xf, zero), xf)
    return {noise_name: noisy.to(x.dtype), f"dropout_{DROPOUT:g}": dropped.to(x.dtype)}


def token_perturbations(x: torch.Tensor, spec: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    if x.is_floating_point() or x.dim() != 2:
        raise DoesNotFit(
            f"the split's inputs are {x.dtype} of shape {list(x.shape)}; token corruption needs (N, T) integer ids"
        )
    corrupt = torch.rand(x.shape, generator=g) < TOKEN_CORRUPTION
    noise = torch.randint(0, spec["vocab_size"], x.shape, generator=g).to(x.dtype)
    name = "byte_corruption" if spec["vocab_size"] == 256 else "token_corruption"
    return {f"{name}_{TOKEN_CORRUPTION:g}": torch.where(corrupt, noise, x)}


def _randn(shape, g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _mask(n: int, share: float, g: torch.Generator) -> np.ndarray:
    return (torch.rand(n, generator=g) < share).numpy()


def robustness(
    model,
    split: Split,
    task: str,
    classes,
    spec: dict | None,
    clean: dict,
    shifted: Split | None = None,
    batch_size: int = 256,
) -> dict:
    """Headline metrics and their change from `clean` under each perturbation (and the shifted split).

    Returns {name: {metric: {value, delta}, n}}; {"skipped": why} in place of the perturbations
    when none fits, {name: {"skipped": why}} for one the model fails on; "shifted_split" always.
    """
    out: dict = {}
    try:
        variants = perturbations(split, spec)
    except DoesNotFit as e:
        out["skipped"], variants = str(e), {}
    if shifted is not None:
        variants["shifted_split"] = shifted
    for name, variant in variants.items():
        try:
            m = compute_metrics(predict_split(model, variant, task, classes, batch_size), task, classes)
        except Exception as e:  # noqa: BLE001 - a user's model may reject a variant; report it, keep the evaluation
            out[name] = {
                "skipped": (
                    f"the model failed on these inputs: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
            }
            continue
        out[name] = {
            k: {"value": m[k], "delta": None if m[k] is None or clean.get(k) is None else m[k] - clean[k]}
            for k in HEADLINE[task]
        }
        out[name]["n"] = m["n"]
    if shifted is None:
        out["shifted_split"] = {
            "note": "this workload defines no shifted split (Workload(..., shifted=Split(...)) adds one: "
            "data from a later period or another site)"
        }
    return out
