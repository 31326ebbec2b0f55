"""Miners and samplers: what draws the pairs and negatives the objectives train on, in one place.

* :func:`draw_homologs` (ProtCLIP's ``homology`` objective): one training-set homolog partner per protein,
  optionally a remote one;
* :func:`negative_mask` (hierarchy embedding): which sampled candidates may serve as negatives of a closure pair;
* :func:`mine_nearest_non_ancestors` (the hierarchy's ``warp`` refinement): exact nearest non-ancestors of every
  node and the reconstruction rank of every training pair, in one numba pass;
* class-balanced batches for metric learning: :class:`hypalign.data.sampler.ClassBalancedBatchSampler`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hypalign.losses.hierarchy import KINDS, run_split

#: percent identity below which a training homolog counts as remote (``homology_remote``): the test proteins
#: of a hard split share < 30 % identity with every training protein, and DIAMOND's hits for them mostly < 40 %
REMOTE_IDENTITY = 40.0


def draw_homologs(homologs: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray, rng: np.random.Generator,
                  remote: float = 0.0) -> np.ndarray:
    """One homolog partner per protein of ``rows`` (positions among the training proteins): uniform over its
    homologs (``homologs``: ``(indptr, targets, pident)`` of :func:`~hypalign.data.seqtools.homolog_lists`),
    the protein itself when it has none; with probability ``remote``, uniform over its remote homologs
    (pident < :data:`REMOTE_IDENTITY`) instead, where it has any."""
    indptr, targets, pident = homologs
    lo, n = indptr[rows], indptr[rows + 1] - indptr[rows]
    partner = rows.copy()
    has = n > 0
    partner[has] = targets[lo[has] + (rng.random(int(has.sum())) * n[has]).astype(np.int64)]
    if remote > 0:
        for j in np.flatnonzero(has & (rng.random(len(rows)) < remote)).tolist():
            far = np.flatnonzero(pident[lo[j]:lo[j] + n[j]] < REMOTE_IDENTITY)
            if len(far):
                partner[j] = targets[lo[j] + far[rng.integers(len(far))]]
    return partner


def mine_nearest_non_ancestors(
    weight: Tensor | np.ndarray, indptr: np.ndarray, indices: np.ndarray, model: str, c: float, k: int,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact hard negatives and reconstruction ranks in one pass over the table (numba, :data:`THREADS`).

    For every node ``u`` in ``rows`` (default all), with ancestors ``indices[indptr[u]:indptr[u+1]]``:

    * ``pool[r]``: the ``k`` nearest nodes to ``u`` that are neither ``u`` nor its ancestors (nearest first,
      ``-1`` where fewer exist);
    * ``ranks[indptr[u] + t]``: ``1 + #{w non-ancestor, w != u: d(u, w) < d(u, a_t)}`` for each ancestor
      ``a_t``: the filtered reconstruction rank of Nickel & Kiela (2017), the same numbers as
      :func:`hypalign.eval.hierarchy.reconstruction` (tested); entries of nodes not in ``rows`` stay 0.

    Distances are compared through a monotone score computed from coordinate differences in float64
    (exact for deep float64 Poincaré points). Cost: ``rows x N x D`` (all nouns: ~20 s on 2 cores).
    """
    from hypalign.losses._hierarchy_kernels import nearest_non_ancestors

    if model not in KINDS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(KINDS)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    w = weight.detach().cpu().numpy() if isinstance(weight, Tensor) else np.asarray(weight)
    w = w.astype(np.float64, copy=False)
    embT = np.ascontiguousarray(w.T)
    nrm = np.einsum("ij,ij->i", w, w)
    rows = np.arange(len(w), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    pool = np.empty((len(rows), k), dtype=np.int64)
    ranks = np.zeros(len(indices), dtype=np.int64)
    ip, ix = np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)

    def run(s: slice) -> None:
        nearest_non_ancestors(embT, nrm, rows[s], ip, ix, KINDS[model], float(c), pool[s], ranks)

    run_split(run, len(rows), min_rows=16)
    return pool, ranks


def negative_mask(u: Tensor, v: Tensor, indptr: np.ndarray, indices: np.ndarray) -> Tensor:
    """Which candidates count: the positive always; a negative unless it is ``u`` or one of ``u``'s
    ancestors (``indices[indptr[u]:indptr[u+1]]``, sorted)."""
    from hypalign.losses._hierarchy_kernels import negative_mask as _mask

    un, vn = u.numpy(), v.numpy()
    return torch.from_numpy(np.concatenate(run_split(lambda s: _mask(un[s], vn[s], indptr, indices), len(un))))
