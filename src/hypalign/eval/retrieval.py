"""Retrieval metrics in an embedding's own geometry: Recall@K, precision@1, R-precision, MAP@R, MRR.

Every metric ranks the gallery by the geometry's geodesic distance (exact k-NN from
:mod:`hypalign.search.exact`); nothing here assumes cosine.

Definitions (Musgrave et al. 2020 "A Metric Learning Reality Check"; Hyp-ViT §4):

* **Recall@K** = fraction of queries with at least one same-label item among their K nearest
  gallery items (the query itself excluded when the gallery is the query set).
* **precision@1** = fraction of queries whose nearest item has their label (= Recall@1).
* **R-precision** = mean over queries of ``(# relevant among the R_q nearest) / R_q``, where
  ``R_q`` is the number of gallery items sharing the query's label.
* **MAP@R** = mean over queries of ``(1/R_q) sum_{i <= R_q} P@i * rel_i`` (pytorch-metric-learning's
  ``mean_average_precision_at_r``).
* **MRR (first relevant)** = mean over queries of ``1 / rank`` of the nearest relevant item, its rank
  counted among *all* gallery items (ties counted in the query's favour).
* **MRR (all positives, filtered)** = mean over queries of the mean over each relevant item ``p`` of
  ``1 / rank(p)``, where ``rank(p) = 1 + #(non-relevant items closer than p)``: every positive is
  ranked against the negatives only (the "filtered" setting of link prediction and BioBridge).

Queries without any relevant gallery item are left out of every metric and counted in
``n_queries_without_relevant``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hypalign.geometry import Manifold
from hypalign.search.exact import DEFAULT_WORKSPACE_BYTES, knn

DEFAULT_KS = (1, 2, 4, 8)
RETRIEVAL_METRICS = ("recall", "precision@1", "r-precision", "map@r", "mrr")


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def _encode_labels(q: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, inv = np.unique(np.concatenate([np.asarray(q), np.asarray(g)]), return_inverse=True)
    return inv[: len(q)].astype(np.int64), inv[len(q) :].astype(np.int64)


def relevant_ranks(
    queries: torch.Tensor | np.ndarray,
    gallery: torch.Tensor | np.ndarray,
    relevant: Sequence[np.ndarray],
    geometry: Manifold,
    exclude: np.ndarray | None = None,
    filtered: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> list[np.ndarray]:
    """1-based rank of every relevant gallery item of every query.

    ``relevant[i]`` holds gallery indices relevant to query ``i``. Unfiltered: rank among all
    gallery items (``1 + #items strictly closer``); ``filtered=True``: among the non-relevant items
    only. ``exclude[i]`` (``-1`` for none) is a gallery index query ``i`` never counts (itself,
    when the gallery is the query set). Memory: one chunk of full distance rows, bounded by
    ``workspace_bytes``.
    """
    q, g = _as_tensor(queries), _as_tensor(gallery)
    n, m = q.shape[0], g.shape[0]
    if len(relevant) != n:
        raise ValueError(f"relevant has {len(relevant)} entries for {n} queries")
    rows = max(1, int(workspace_bytes // max(1, 16 * m)))
    out: list[np.ndarray] = []
    with torch.no_grad():
        for s in range(0, n, rows):
            d = geometry.cdist(q[s : s + rows], g).double()
            b = d.shape[0]
            if exclude is not None:
                ex = torch.as_tensor(np.asarray(exclude[s : s + b]), dtype=torch.int64)
                keep = ex >= 0
                d[torch.arange(b)[keep], ex[keep]] = float("inf")
            rel_idx = [torch.as_tensor(relevant[s + i], dtype=torch.int64) for i in range(b)]
            rel_d = [d[i, rel_idx[i]] for i in range(b)]
            if filtered:
                for i in range(b):
                    d[i, rel_idx[i]] = float("inf")
            for i in range(b):
                if rel_d[i].numel() == 0:
                    out.append(np.zeros(0, dtype=np.int64))
                    continue
                # only items closer than the farthest relevant one can change a rank: sort just those
                row = d[i]
                closer = torch.sort(row[row < rel_d[i].max()]).values
                r = torch.searchsorted(closer, rel_d[i], side="left") + 1
                out.append(r.numpy().astype(np.int64))
    return out


def mean_reciprocal_rank(ranks: Sequence[np.ndarray], variant: str = "first") -> float:
    """MRR from per-query ranks: ``first`` = 1/min rank, ``all`` = mean of 1/rank over the positives."""
    if variant not in ("first", "all"):
        raise ValueError(f"variant must be 'first' or 'all', got {variant!r}")
    vals = [1.0 / float(np.min(r)) if variant == "first" else float(np.mean(1.0 / r)) for r in ranks if len(r)]
    return float(np.mean(vals)) if vals else float("nan")


def retrieval_metrics(
    queries: torch.Tensor | np.ndarray,
    query_labels: np.ndarray | Sequence[object],
    geometry: Manifold,
    gallery: torch.Tensor | np.ndarray | None = None,
    gallery_labels: np.ndarray | Sequence[object] | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = RETRIEVAL_METRICS,
    mrr_all: bool = False,
    backend: str = "auto",
) -> dict[str, float]:
    """Label-based retrieval metrics (see the module docstring for each definition).

    Without ``gallery`` the queries are searched against themselves with the query excluded
    (CUB / Cars / SOP protocol); with a separate gallery nothing is excluded (In-Shop).
    Returns a dict keyed ``recall@K``, ``precision@1``, ``r-precision``, ``map@r``, ``mrr``
    (and ``mrr_all`` when asked), plus ``n_queries`` and ``n_queries_without_relevant``.
    """
    unknown = set(metrics) - set(RETRIEVAL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {RETRIEVAL_METRICS}")
    q = _as_tensor(queries)
    same = gallery is None
    g = q if same else _as_tensor(gallery)
    ql_raw = np.asarray(query_labels)
    gl_raw = ql_raw if same else np.asarray(gallery_labels if gallery_labels is not None else [])
    if len(ql_raw) != q.shape[0] or len(gl_raw) != g.shape[0]:
        raise ValueError(
            f"labels do not match embeddings: {len(ql_raw)} query labels for {q.shape[0]} queries, "
            f"{len(gl_raw)} gallery labels for {g.shape[0]} gallery items"
        )
    ql, gl = _encode_labels(ql_raw, gl_raw)
    counts = np.bincount(gl, minlength=int(max(ql.max(initial=0), gl.max(initial=0))) + 1)
    r_q = counts[ql] - (1 if same else 0)
    has_rel = r_q > 0
    need_r = any(mname in metrics for mname in ("r-precision", "map@r"))
    k_max = max(max(ks), int(r_q.max(initial=1)) if need_r else 1)
    k_max = max(1, min(k_max, g.shape[0] - (1 if same else 0)))
    _, idx = knn(q, g, geometry, k_max, exclude_self=same, backend=backend)
    idx_np = idx.numpy()
    lab = np.where(idx_np >= 0, gl[np.clip(idx_np, 0, None)], -1)
    rel = (lab == ql[:, None])[has_rel]
    rq = r_q[has_rel]
    out: dict[str, float] = {"n_queries": int(has_rel.sum()), "n_queries_without_relevant": int((~has_rel).sum())}
    if "recall" in metrics:
        for k in ks:
            out[f"recall@{k}"] = float(rel[:, :k].any(1).mean())
    if "precision@1" in metrics:
        out["precision@1"] = float(rel[:, 0].mean())
    if need_r:
        cols = np.arange(1, rel.shape[1] + 1)
        within_r = cols[None, :] <= rq[:, None]
        hits = rel & within_r
        if "r-precision" in metrics:
            out["r-precision"] = float((hits.sum(1) / rq).mean())
        if "map@r" in metrics:
            prec_at_i = np.cumsum(rel, axis=1) / cols[None, :]
            out["map@r"] = float(((prec_at_i * hits).sum(1) / rq).mean())
    if "mrr" in metrics:
        first = np.where(rel.any(1), rel.argmax(1) + 1, 0).astype(np.float64)
        missing = np.flatnonzero(first == 0)
        if missing.size:
            # the nearest relevant item lies beyond the k-NN list: count exactly for those queries
            sel = np.flatnonzero(has_rel)[missing]
            ranks = relevant_ranks(q[sel], g, _relevant(sel, ql, gl, same), geometry, exclude=_self(sel, same))
            first[missing] = [r.min() for r in ranks]
        out["mrr"] = float(np.mean(1.0 / first))
    if mrr_all:
        sel = np.flatnonzero(has_rel)
        ranks = relevant_ranks(
            q[sel], g, _relevant(sel, ql, gl, same), geometry, exclude=_self(sel, same), filtered=True
        )
        out["mrr_all"] = mean_reciprocal_rank(ranks, "all")
    return out


def _relevant(sel: np.ndarray, ql: np.ndarray, gl: np.ndarray, same: bool) -> list[np.ndarray]:
    """Gallery indices sharing each selected query's label (the query itself left out)."""
    return [np.flatnonzero((gl == ql[i]) & (np.arange(len(gl)) != (i if same else -1))) for i in sel]


def _self(sel: np.ndarray, same: bool) -> np.ndarray | None:
    return sel.copy() if same else None
