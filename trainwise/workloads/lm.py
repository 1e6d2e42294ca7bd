"""`lm`: a byte-level GPT (nanoGPT-style) on the Python standard library's own source.

The corpus is on every machine that runs Python, so nothing is downloaded. Files are split into
train/val/test by a hash of their relative path, so the split is deterministic and a file never
straddles two splits (no leakage of near-identical lines between train and test).
"""

from __future__ import annotations

import hashlib
import math
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from trainwise.workloads.base import Split, Workload, register_model, register_workload
from trainwise.workloads.inputs import tokens_input

VOCAB_SIZE = 256  # bytes


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, n_heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """One pre-norm transformer block; the unit of activation checkpointing and compilation."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, n_layers: int, n_heads: int, d_model: int, context: int, dropout: float = 0.0):
        super().__init__()
        self.context = context
        self.tok_emb = nn.Embedding(VOCAB_SIZE, d_model)
        self.pos_emb = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, n_heads, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB_SIZE, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layers) to keep the residual stream's variance flat
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))  # (B, T, vocab)


@register_model("gpt")
def build_gpt(n_layers: int, n_heads: int, d_model: int, context: int, dropout: float = 0.0) -> GPT:
    return GPT(n_layers, n_heads, d_model, context, dropout)


# ---------------------------------------------------------------------------------------------
# the corpus

# The test suite and IDLE are left out: they hold large generated/binary-like files, and the
# remaining ~13 MB of library source is the corpus the recipes are tuned for.
_EXCLUDED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__", "lib2to3", "turtledemo"}


def stdlib_files() -> list[tuple[str, Path]]:
    """The standard library's .py files as (relative path, path), sorted for determinism."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if _EXCLUDED_DIRS.intersection(rel.parts[:-1]):
            continue
        out.append((rel.as_posix(), p))
    return sorted(out)


def _split_of(rel: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    h = int(hashlib.sha256(f"{seed}:{rel}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"


def _windows(data: bytes, groups: np.ndarray, context: int, group_names: list[str]) -> Split:
    """Cut a byte string into non-overlapping (context + 1)-byte windows: input and shifted target."""
    n = (len(data) - 1) // context
    arr = np.frombuffer(data, dtype=np.uint8)
    idx = np.arange(n)[:, None] * context + np.arange(context + 1)[None, :]  # (n, T + 1)
    w = torch.from_numpy(arr[idx].astype(np.int64))
    group = groups[idx[:, 0]]
    meta = pd.DataFrame({"group": [group_names[g] for g in group]})
    return Split(inputs=w[:, :-1].contiguous(), targets=w[:, 1:].contiguous(), meta=meta)


def load_stdlib_splits(
    context: int, val_fraction: float, test_fraction: float, seed: int, max_bytes: int = 0
) -> dict[str, Split]:
    """Train/val/test splits of the standard library source as byte windows."""
    parts: dict[str, list[bytes]] = {"train": [], "val": [], "test": []}
    group_ids: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    group_names = []  # the top-level package or module of each file: the evaluation's source-file group
    name_to_id: dict[str, int] = {}
    total = 0
    for rel, path in stdlib_files():
        data = path.read_bytes()
        split = _split_of(rel, val_fraction, test_fraction, seed)
        g = rel.split("/")[0].removesuffix(".py")
        if g not in name_to_id:
            name_to_id[g] = len(group_names)
            group_names.append(g)
        parts[split].append(data)
        group_ids[split].append(np.full(len(data), name_to_id[g], dtype=np.int32))
        total += len(data)
        if max_bytes and total >= max_bytes:
            break
    out = {}
    for split in parts:
        data = b"".join(parts[split])
        if len(data) < 2 * (context + 1):
            raise ValueError(f"lm corpus: the {split} split has only {len(data)} bytes; raise data.max_corpus_bytes")
        out[split] = _windows(data, np.concatenate(group_ids[split]), context, group_names)
    return out


@register_workload("lm")
def lm_workload(cfg) -> Workload:
    m, d = cfg.model, cfg.data
    splits = load_stdlib_splits(m.context, d.val_fraction, d.test_fraction, d.split_seed, d.max_corpus_bytes)
    kwargs = dict(n_layers=m.n_layers, n_heads=m.n_heads, d_model=m.d_model, context=m.context, dropout=m.dropout)
    return Workload(
        name="lm",
        task="lm",
        model=build_gpt(**kwargs),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        spec={"builder": "gpt", "kwargs": kwargs},
        info={"vocab_size": VOCAB_SIZE, "input": "bytes", "slice_columns": ["group"]},
        block_classes=(Block,),
        input=tokens_input(VOCAB_SIZE, m.context),
    )
