"""The hierarchy-embedding objective of Poincaré embeddings (Nickel & Kiela 2017, eq. 6; 2018, eq. 9).

For a closure edge ``(u, v)`` (``v`` an ancestor of ``u``) and negatives ``N(u)`` (nodes that are
not ancestors of ``u``, nor ``u``), the loss is the softmax cross-entropy

    ``L(u, v) = -log( exp(-d(u, v)) / sum_{v' in {v} ∪ N(u)} exp(-d(u, v')) )``

averaged over the batch. :func:`hierarchy_nll_loss` evaluates it in torch for any geometry (the
reference path, also used with Riemannian SGD); :func:`hierarchy_nll_fused` computes loss and
gradient in one numba pass for the three models (Lorentz space components, Poincaré ball,
Euclidean) and is what training uses by default (same value and gradient; tested against the torch
path in float64).

:func:`rank_hinge_loss` is the alternative objective ``--loss warp``: a margin ranking loss on the
nearest non-ancestors, each pair weighted by its current rank (WARP, Weston, Bengio & Usunier 2011, with
the linear rank weighting that makes it a surrogate of the mean rank);
:func:`~hypalign.objectives.miners.mine_nearest_non_ancestors`
supplies both the negatives and the exact ranks in one pass over the table.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

KINDS = {"lorentz": 0, "poincare": 1, "euclidean": 2}
T = TypeVar("T")


def hierarchy_nll_loss(d: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over rows of ``-log softmax(-d)[0]``; ``d`` is ``(B, 1 + K)`` with the positive first.

    ``mask`` (same shape, bool) leaves out candidates that must not count as negatives.
    """
    logits = -d
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.zeros(d.shape[0], dtype=torch.long, device=d.device))


class _FusedNLL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, weight: Tensor, u: Tensor, v: Tensor, mask: Tensor, kind: int, c: float, sparse: bool
    ) -> Tensor:
        from hypalign.losses._hierarchy_kernels import hierarchy_nll_grad

        w = weight.detach().contiguous().numpy()  # float32 or float64 (the gradient keeps the table's dtype)
        un, vn, mn = u.numpy(), v.numpy(), mask.numpy()
        n, k1 = vn.shape
        gu = np.zeros((n, w.shape[1]), dtype=w.dtype)
        gv = np.zeros((n, k1, w.shape[1]), dtype=w.dtype)
        def run(s: slice) -> np.ndarray:
            return hierarchy_nll_grad(w, un[s], vn[s], mn[s], kind, float(c), 1.0 / n, gu[s], gv[s])

        losses = run_split(run, n)
        ctx.save_for_backward(u, v, torch.from_numpy(gu), torch.from_numpy(gv))
        ctx.shape, ctx.dtype, ctx.sparse = weight.shape, weight.dtype, sparse
        return torch.tensor(float(np.concatenate(losses).mean()), dtype=weight.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        u, v, gu, gv = ctx.saved_tensors
        rows = torch.cat([u, v.reshape(-1)])
        values = torch.cat([gu, gv.reshape(-1, gu.shape[1])]) * grad_out.to(gu.dtype)
        if ctx.sparse:  # only the rows this batch touched (LazyAdam / sparse RSGD update just those)
            from hypalign.losses._hierarchy_kernels import sum_rows

            uniq, summed = sum_rows(rows.numpy(), values.numpy(), _slot(ctx.shape[0]))
            idx = torch.from_numpy(np.sort(uniq))
            order = np.argsort(uniq)
            grad = torch.sparse_coo_tensor(
                idx.unsqueeze(0), torch.from_numpy(summed[order]).to(ctx.dtype), ctx.shape, is_coalesced=True,
                check_invariants=False,
            )
        else:
            grad = torch.zeros(ctx.shape, dtype=values.dtype).index_add_(0, rows, values).to(ctx.dtype)
        return grad, None, None, None, None, None, None


def hierarchy_nll_fused(
    weight: Tensor, u: Tensor, v: Tensor, mask: Tensor, model: str, c: float = 1.0, sparse: bool = False
) -> Tensor:
    """Same value and gradient as ``hierarchy_nll_loss(dist(weight[u], weight[v]), mask)`` (CPU tensors;
    ``weight`` float32 or float64 — float64 keeps deep WordNet levels, at geodesic radius 20 and beyond,
    apart: float32 Poincaré points cannot get further than radius ~12 from the origin).

    ``weight``: ``(N, D)`` coordinates (Lorentz space components, Poincaré ball points or Euclidean);
    ``u``: ``(B,)``; ``v``: ``(B, 1 + K)`` (positive first); ``mask``: ``(B, 1 + K)`` bool.
    ``sparse=True`` gives ``weight`` a sparse gradient holding only the rows the batch touched.
    """
    if model not in KINDS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(KINDS)}")
    if weight.device.type != "cpu":
        raise ValueError("the fused hierarchy loss runs on CPU; use hierarchy_nll_loss on other devices")
    if weight.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the fused hierarchy loss needs a float32 or float64 table, got {weight.dtype}")
    return _FusedNLL.apply(weight, u.contiguous(), v.contiguous(), mask.contiguous(), KINDS[model], c, sparse)


def rank_hinge_loss(d_pos: Tensor, d_neg: Tensor, weight: Tensor, margin: float = 0.1,
                    mask: Tensor | None = None) -> Tensor:
    """Rank-weighted margin loss (WARP with ``L(r) = r - 1``: a surrogate of the reconstruction mean rank).

    ``L = (1/B) sum_b weight_b * sum_k max(0, margin + d(u_b, v_b) - d(u_b, w_bk))``

    with ``d_pos`` ``(B,)`` the distances to the true ancestors, ``d_neg`` ``(B, k)`` those to negatives
    drawn from each ``u``'s nearest non-ancestors, ``mask`` ``(B, k)`` (optional, bool) the negatives that
    count. Each violated negative is one node ranked above the ancestor, so the hinge sum counts (softly)
    ``rank - 1``; ``weight_b = max(1, (rank_b - 1) / K)`` for a pool of the ``K`` nearest restores the
    count for pairs with more violators than the pool holds (Weston et al. 2011 estimate the rank by
    sampling; here it is exact, from :func:`~hypalign.objectives.miners.mine_nearest_non_ancestors`).
    """
    h = torch.relu(margin + d_pos.unsqueeze(1) - d_neg)
    if mask is not None:
        h = h * mask.to(h.dtype)
    return (h.sum(1) * weight.to(h.dtype)).mean()


_POOL: ThreadPoolExecutor | None = None
_SLOT = np.zeros(0, dtype=np.int64)
THREADS = max(1, os.cpu_count() or 1)  # kernel threads (independent of torch's intra-op threads)


def _slot(n: int) -> np.ndarray:
    global _SLOT
    if len(_SLOT) < n:
        _SLOT = -np.ones(n, dtype=np.int64)
    return _SLOT


def run_split(fn: Callable[[slice], T], n: int, min_rows: int = 256) -> list[T]:
    """Run ``fn`` on contiguous slices of ``range(n)``, one per :data:`THREADS` (the kernels release the GIL)."""
    global _POOL
    threads = max(1, min(THREADS, n // min_rows))
    if threads == 1:
        return [fn(slice(0, n))]
    if _POOL is None or _POOL._max_workers < threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hypalign-hier")
    bounds = np.linspace(0, n, threads + 1).astype(int)
    futures = [_POOL.submit(fn, slice(int(a), int(b))) for a, b in itertools.pairwise(bounds)]
    return [f.result() for f in futures]
