"""Class-balanced batches for metric learning: ``N`` distinct classes × ``m`` samples per batch.

Each epoch the classes are permuted with a generator seeded by ``seed * 10000 + epoch`` (Hyp-ViT's
``UniqueClassSempler``, spec §1.4), the permutation is split into ``world_size`` disjoint contiguous
parts (rank ``r`` gets part ``r``: ranks never share a class), and each part is cut into batches of
``classes_per_batch`` classes. :meth:`ClassBalancedBatchSampler.batches` lists every rank's batches
interleaved (``[b0 of rank 0, b0 of rank 1, ..., b1 of rank 0, ...]``), so the trainer's
:func:`~hypalign.train.trainer.shard_batches` (``specs[r::world]``) gives rank ``r`` exactly its part.
For every class ``m`` of its items are drawn (without
replacement when it has at least ``m``). Batches are returned as index tensors laid out class by
class (``[c0 s0, c0 s1, ..., c1 s0, ...]``) so that ``z.view(N, m, D)`` groups samples by class.
Incomplete batches are dropped (``drop_last``). ``passes > 1`` repeats this with fresh permutations
within one epoch (for data sets with few classes, such as the digits default, where one
permutation gives a single batch); ``passes = 1`` is Hyp-ViT's sampler.
"""

from __future__ import annotations

import numpy as np
import torch

from hypalign.errors import InputError


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixing ``parts`` (splitmix64 steps; cheap enough to call per sample): augmentation and caption
    draws seeded by ``(seed, epoch, batch, …)``, so that a resumed run sees the same ones."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class ClassBalancedBatchSampler:
    """Deterministic per-epoch class-balanced batches (see module docstring)."""

    def __init__(
        self,
        labels: np.ndarray,
        classes_per_batch: int,
        samples_per_class: int = 2,
        seed: int = 0,
        world_size: int = 1,
        passes: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        self.classes, inverse = np.unique(labels, return_inverse=True)
        self.by_class = [np.flatnonzero(inverse == k) for k in range(len(self.classes))]
        self.n, self.m = int(classes_per_batch), int(samples_per_class)
        self.seed, self.world, self.passes = int(seed), int(world_size), max(1, int(passes))
        if self.m < 2:
            raise InputError("samples per class must be >= 2 (the loss needs positive pairs)")
        if self.n < 2:
            raise InputError("classes per batch must be >= 2 (the loss needs negatives)")
        per_rank = len(self.classes) // self.world
        if per_rank < self.n:
            raise InputError(
                f"{len(self.classes)} classes over {self.world} process(es) give {per_rank} per process, "
                f"fewer than the {self.n} classes a batch needs; lower the batch size or samples per class"
            )

    def __len__(self) -> int:
        """Batches of one epoch, all ranks together."""
        return self.passes * ((len(self.classes) // self.world) // self.n) * self.world

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Every rank's batches of ``epoch``, interleaved by rank (see the module docstring); rank ``r`` draws its
        samples from a generator of its own (``seed, epoch, r``)."""
        g = torch.Generator().manual_seed(self.seed * 10000 + epoch)
        rngs = [np.random.default_rng([self.seed, epoch, r]) for r in range(self.world)]
        out = []
        for _ in range(self.passes):
            perm = torch.randperm(len(self.classes), generator=g).numpy()
            per_rank = len(perm) // self.world
            for b in range(per_rank // self.n):
                for r in range(self.world):
                    idx = []
                    for k in perm[r * per_rank + b * self.n : r * per_rank + (b + 1) * self.n]:
                        pool = self.by_class[k]
                        idx.append(rngs[r].choice(pool, self.m, replace=len(pool) < self.m))
                    out.append(torch.from_numpy(np.concatenate(idx).astype(np.int64)))
        return out


def window_batches(lengths: np.ndarray, window: int, per: int, world: int, seed: int,
                   epoch: int) -> list[torch.Tensor]:
    """An epoch of batch specifications over sequences of ``lengths``: a permutation seeded by ``(seed, epoch)`` in
    batches of ``per`` rows ``(index, window start)`` (``(per, 2)`` int64 tensors), a sequence longer than ``window``
    starting at an offset drawn from the same generator (uniform over the places the window fits), the last
    incomplete batch dropped and the count cut to a multiple of ``world`` (every rank the same number of steps).
    Deterministic from ``(seed, epoch)`` alone, so a resumed run sees the same windows."""
    n = len(lengths)
    g = torch.Generator().manual_seed(mix_seed(seed, epoch))
    perm = torch.randperm(n, generator=g)
    room = torch.from_numpy(np.maximum(np.asarray(lengths) - window, 0))
    start = (torch.rand(n, generator=g, dtype=torch.float64) * (room + 1)).long().clamp_max(room)
    specs = [torch.stack([rows, start[rows]], 1) for rows in (perm[b * per : (b + 1) * per] for b in range(n // per))]
    return specs[: len(specs) - len(specs) % world] if len(specs) >= world else specs
