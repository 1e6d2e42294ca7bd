"""Deterministic data order, indexed by step: resume needs no sampler state beyond the step.

The training stream is the concatenation of per-epoch permutations of the training split, each
drawn from a generator seeded by (seed, epoch). Optimizer step s consumes stream positions
[s * G, (s + 1) * G) where G is the global batch; within it, micro-batch m of rank r takes the
slice [(m * W + r) * B, (m * W + r + 1) * B). So the examples of every optimizer step are the same
at any world size W and micro-batch B (only their grouping differs), which is what makes one
config give the same trajectory on 1 or N processes.
"""

from __future__ import annotations

import torch


class StepSampler:
    def __init__(self, n_examples: int, global_batch: int, micro_batch: int, world_size: int, rank: int, seed: int):
        self.n = n_examples
        self.global_batch = global_batch
        self.micro_batch = micro_batch
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    @property
    def accumulation_steps(self) -> int:
        return self.global_batch // (self.micro_batch * self.world_size)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm

    def indices(self, step: int, micro: int) -> torch.Tensor:
        """Example indices of micro-batch `micro` of optimizer step `step` on this rank."""
        start = step * self.global_batch + (micro * self.world_size + self.rank) * self.micro_batch
        positions = torch.arange(start, start + self.micro_batch)
        epochs = positions // self.n
        out = torch.empty(self.micro_batch, dtype=torch.long)
        for e in epochs.unique().tolist():  # a micro-batch spans at most two epochs
            mask = epochs == e
            out[mask] = self._permutation(int(e))[positions[mask] % self.n]
        return out


def eval_indices(n_examples: int, n_batches: int, batch_size: int) -> list[torch.Tensor]:
    """Fixed, evenly spread validation batches: the same examples at every validation and in every run."""
    total = min(n_examples, n_batches * batch_size)
    idx = torch.linspace(0, n_examples - 1, total).round().long()
    return list(idx.split(batch_size))
