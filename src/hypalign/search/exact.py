"""Exact k-nearest-neighbour search in any hypalign geometry, by reduction to maximum inner product.

For Lorentz points (curvature ``-c``, space components ``x``, time ``x_t``),
``d(x, y) = (1/sqrt(c)) arccosh(-c <x, y>_L)`` is decreasing in ``<x, y>_L = x.y - x_t y_t``, so
the geodesic nearest neighbour of ``q`` is the gallery point with the largest ordinary inner
product between ``[x, x_t]`` and ``[q, -q_t]`` (the query's time coordinate negated). Poincaré points
are mapped onto the hyperboloid first (an isometry). The sphere is cosine similarity; Euclidean
distance is ``max q.x - ||x||^2 / 2`` with one extra coordinate.

The inner products run on faiss ``IndexFlatIP`` (BLAS, multithreaded, bounded memory) or, without
faiss, on chunked torch matrix products with ``topk``. The ``k + margin`` best candidates are then
re-ranked with the geometry's own distance (``Manifold.dist_candidates``: the ``cdist`` factor form
with its refinement of near-coincident pairs), so returned distances are accurate and near-ties
that the float32 inner products cannot separate are put in the right order.
"""

from __future__ import annotations

import numpy as np
import torch

from hypalign.geometry import Manifold

#: extra candidates taken from the inner-product search and re-ranked exactly
RERANK_MARGIN = 16
#: default bound on the score block of the torch backend (query chunk x gallery), bytes
DEFAULT_WORKSPACE_BYTES = 512 * 2**20


def mips_vectors(x: torch.Tensor, geometry: Manifold, role: str) -> torch.Tensor:
    """Vectors whose inner product ranks like ``-distance``: ``role`` is ``"gallery"`` or ``"query"``."""
    if role not in ("gallery", "query"):
        raise ValueError(f"role must be 'gallery' or 'query', got {role!r}")
    x = x.float() if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16) else x
    return geometry.mips_vectors(x, role)  # each geometry's own reduction


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _ip_topk_torch(q: torch.Tensor, g: torch.Tensor, k: int, workspace_bytes: int) -> torch.Tensor:
    rows = max(1, int(workspace_bytes // max(1, g.shape[0] * g.element_size())))
    out = torch.empty((q.shape[0], k), dtype=torch.int64, device=q.device)
    with torch.no_grad():
        for s in range(0, q.shape[0], rows):
            scores = q[s : s + rows] @ g.T
            out[s : s + rows] = scores.topk(k, dim=1).indices
    return out


def _ip_topk_faiss(q: torch.Tensor, g: torch.Tensor, k: int) -> torch.Tensor:
    import faiss

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(np.ascontiguousarray(g.cpu().numpy(), dtype=np.float32))
    _, idx = index.search(np.ascontiguousarray(q.cpu().numpy(), dtype=np.float32), k)
    return torch.from_numpy(idx).to(q.device)


def rerank(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    candidates: torch.Tensor,
    geometry: Manifold,
    k: int,
    exclude: torch.Tensor | None = None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each query's candidate gallery indices by exact geodesic distance; keep ``k``.

    ``exclude[i]`` (optional) is a gallery index never returned for query ``i`` (the query
    itself when searching a set against itself). Invalid candidates (``-1``) are dropped.
    """
    n, kc = candidates.shape
    out_d = torch.full((n, k), float("inf"), dtype=torch.float32, device=queries.device)
    out_i = torch.full((n, k), -1, dtype=torch.int64, device=queries.device)
    cache = geometry.gallery_cache(gallery)
    with torch.no_grad():
        for s in range(0, n, chunk):
            cand = candidates[s : s + chunk]
            valid = cand >= 0
            if exclude is not None:
                valid &= cand != exclude[s : s + chunk, None]
            d = geometry.dist_candidates(queries[s : s + chunk], gallery, cand.clamp_min(0), cache=cache).float()
            d = torch.where(valid, d, torch.full_like(d, float("inf")))
            # stable sort: ties keep the index order the inner-product search produced
            order = torch.sort(d, dim=1, stable=True).indices[:, :k]
            take = min(k, kc)
            out_d[s : s + chunk, :take] = torch.gather(d, 1, order)[:, :take]
            out_i[s : s + chunk, :take] = torch.where(
                torch.isfinite(out_d[s : s + chunk, :take]), torch.gather(cand, 1, order)[:, :take], -1
            )
    return out_d, out_i


def knn(
    queries: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    geometry: Manifold,
    k: int,
    exclude_self: bool = False,
    backend: str = "auto",
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    rerank_margin: int = RERANK_MARGIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest gallery points of each query under ``geometry``.

    Args:
        queries, gallery: ``(n, D)`` and ``(m, D)`` points of the geometry.
        exclude_self: queries *are* the gallery (same rows); never return a query itself.
        backend: ``"faiss"`` (IndexFlatIP), ``"torch"`` (chunked matmul + topk), ``"cdist"`` (the geometry's
            own all-pairs distances, chunked, + topk) or ``"auto"``: ``cdist`` when either input is float64
            (the inner-product reduction runs in float32 and, for points far from the origin such as the deep
            levels of a float64 Poincaré hierarchy embedding, misses true neighbours), else faiss if installed,
            else torch.
        workspace_bytes: bound on the torch backend's score block.

    Returns:
        ``(distances, indices)``, each ``(n, k)``, nearest first; ``-1`` / ``inf`` pad when the
        gallery has fewer than ``k`` eligible points. On the queries' device (CUDA tensors are
        searched on the GPU by the torch backend; faiss searches a CPU copy).
    """
    q = torch.as_tensor(queries)
    g = torch.as_tensor(gallery).to(q.device)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"knn: expected (n, D) queries and (m, D) gallery, got {tuple(q.shape)} and {tuple(g.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if exclude_self and q.shape[0] != g.shape[0]:
        raise ValueError("exclude_self needs the queries to be the gallery (same number of rows)")
    if backend == "auto":
        backend = "cdist" if torch.float64 in (q.dtype, g.dtype) else "faiss" if _faiss_available() else "torch"
    if backend not in ("faiss", "torch", "cdist"):
        raise ValueError(f"unknown backend {backend!r}; use faiss, torch, cdist or auto")
    if backend == "cdist":
        return _knn_cdist(q, g, geometry, k, exclude_self, workspace_bytes)
    kc = min(g.shape[0], k + int(exclude_self) + rerank_margin)
    qv = mips_vectors(q.float(), geometry, "query").contiguous()
    gv = mips_vectors(g.float(), geometry, "gallery").contiguous()
    cand = _ip_topk_faiss(qv, gv, kc) if backend == "faiss" else _ip_topk_torch(qv, gv, kc, workspace_bytes)
    exclude = torch.arange(q.shape[0], device=q.device) if exclude_self else None
    return rerank(q, g, cand, geometry, k, exclude)


def _knn_cdist(q: torch.Tensor, g: torch.Tensor, geometry: Manifold, k: int, exclude_self: bool,
               workspace_bytes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k-NN from the geometry's own ``cdist`` (with its refinement of near pairs), chunked over queries."""
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    kk = min(k, g.shape[0] - int(exclude_self))
    rows = max(1, int(workspace_bytes // max(1, 2 * g.shape[0] * g.element_size())))
    dist = torch.full((q.shape[0], k), float("inf"), dtype=dtype, device=q.device)
    idx = torch.full((q.shape[0], k), -1, dtype=torch.int64, device=q.device)
    with torch.no_grad():
        for s in range(0, q.shape[0], rows):
            d = geometry.cdist(q[s : s + rows], g, workspace_bytes=workspace_bytes)
            if exclude_self:
                r = torch.arange(d.shape[0], device=d.device)
                d[r, r + s] = float("inf")
            if kk > 0:
                top = torch.topk(d, kk, dim=1, largest=False)
                dist[s : s + rows, :kk], idx[s : s + rows, :kk] = top.values, top.indices
    return dist, idx
