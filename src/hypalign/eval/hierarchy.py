"""How well an embedding reconstructs a hierarchy (Nickel & Kiela 2017, §4.1).

For every node ``u`` with ancestors ``A_u`` in the transitive closure, each true ancestor ``a`` is
ranked by distance among the node's *negatives* (all nodes that are neither ``u`` nor in ``A_u``):
``rank(u, a) = 1 + #{v negative : d(u, v) < d(u, a)}``.

* **mean rank** = mean of ``rank(u, a)`` over all closure pairs;
* **MAP** = mean over nodes of the average precision of ``A_u`` in the ranking of all other nodes:
  with the ancestors' negative-ranks sorted ``r_1 <= ... <= r_P``, the i-th ancestor sits at position
  ``r_i + i - 1`` and ``AP_u = (1/P) sum_i i / (r_i + i - 1)``.

gensim's ``ReconstructionEvaluation`` leaves the node itself among the negatives (distance 0), so
its ranks are exactly one higher and its MAP is biased low; the tests check that relation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hypalign.eval.retrieval import relevant_ranks
from hypalign.geometry import Manifold


def _finite(embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The embeddings as a tensor; non-finite values are an error (they would rank as ties, i.e. perfectly)."""
    from hypalign.errors import InputError

    x = embeddings if isinstance(embeddings, torch.Tensor) else torch.from_numpy(np.asarray(embeddings))
    bad = ~torch.isfinite(x).all(dim=-1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise InputError(f"{int(bad.sum())} of {len(x)} embeddings contain NaN or inf (first: row {first})")
    return x


def average_precision_from_ranks(ranks: np.ndarray) -> float:
    """AP of positives given their ranks among negatives (1-based), as defined in the module docstring."""
    r = np.sort(np.asarray(ranks, dtype=np.float64))
    i = np.arange(1, len(r) + 1)
    return float(np.mean(i / (r + i - 1)))


def reconstruction(
    embeddings: torch.Tensor | np.ndarray,
    ancestors: Sequence[np.ndarray],
    geometry: Manifold,
    nodes: np.ndarray | None = None,
    backend: str = "auto",
) -> dict[str, float]:
    """``mean_rank`` and ``map`` of the closure (``ancestors[v]`` = ancestor indices of node ``v``).

    ``nodes`` restricts the evaluation to a subset of source nodes (a sample, for big graphs);
    ranks are always among all nodes.

    ``backend``: ``"kernel"`` — one tiled numba pass over the table
    (:func:`hypalign.losses.hierarchy.mine_nearest_non_ancestors`, distances compared in float64 from the
    stored coordinates; Poincaré, Lorentz and Euclidean only; all 82k WordNet nouns in ~20 s on 2 cores);
    ``"torch"`` — blocked distance matrices from ``geometry.cdist`` in the table's dtype
    (:func:`~hypalign.eval.retrieval.relevant_ranks`; any geometry; ~110 s for the nouns); ``"auto"`` — the
    kernel where it applies. Both give the same ranks (tested); in float32 a near-tie may fall differently.
    """
    x = _finite(embeddings)
    sel = np.arange(len(ancestors)) if nodes is None else np.asarray(nodes, dtype=np.int64)
    sel = np.array([v for v in sel if len(ancestors[v])], dtype=np.int64)
    kind = _kernel_model(geometry)
    if backend not in ("auto", "kernel", "torch"):
        raise ValueError(f"backend: 'auto', 'kernel' or 'torch', not {backend!r}")
    if backend == "kernel" and kind is None:
        raise ValueError(f"the reconstruction kernel covers Poincaré, Lorentz and Euclidean, not {geometry}")
    if backend != "torch" and kind is not None and len(sel):
        from hypalign.objectives.miners import mine_nearest_non_ancestors

        indptr = np.r_[0, np.cumsum([len(a) for a in ancestors])].astype(np.int64)
        indices = np.concatenate([np.asarray(a, dtype=np.int64) for a in ancestors])
        c = float(getattr(geometry, "c", 1.0))
        _, pair_ranks = mine_nearest_non_ancestors(x, indptr, indices, kind, c, 1, rows=sel)
        ranks = [pair_ranks[indptr[v] : indptr[v + 1]] for v in sel.tolist()]
    else:
        ranks = relevant_ranks(x[sel], x, [ancestors[v] for v in sel], geometry, exclude=sel, filtered=True)
    all_ranks = np.concatenate(ranks) if ranks else np.zeros(0)
    return {
        "mean_rank": float(all_ranks.mean()) if len(all_ranks) else float("nan"),
        "map": float(np.mean([average_precision_from_ranks(r) for r in ranks])) if ranks else float("nan"),
        "n_nodes": len(sel),
        "n_pairs": len(all_ranks),
    }


def _kernel_model(geometry: Manifold) -> str | None:
    """The reconstruction kernel's name for ``geometry`` (None where it has none)."""
    from hypalign.geometry import Euclidean, Lorentz, PoincareBall

    for cls, name in ((PoincareBall, "poincare"), (Lorentz, "lorentz"), (Euclidean, "euclidean")):
        if type(geometry) is cls:
            return name
    return None


def link_prediction(
    embeddings: torch.Tensor | np.ndarray,
    ancestors: Sequence[np.ndarray],
    test_edges: np.ndarray,
    geometry: Manifold,
    hits_at: int = 10,
) -> dict[str, float]:
    """Ranks of held-out ``(child, parent)`` edges, filtered.

    Each held-out parent ``p`` of ``u`` is ranked among the nodes that are neither ``u`` nor any
    true ancestor of ``u`` (``ancestors[u]``, which includes the held-out ones): ``rank = 1 + #{such
    nodes closer to u than p}``. Returns ``mean_rank``, ``mrr``, ``hits@{hits_at}`` over edges and
    ``map`` (average precision of each child's held-out parents, averaged over children).
    """
    x = _finite(embeddings)
    test_edges = np.asarray(test_edges, dtype=np.int64).reshape(-1, 2)
    if len(test_edges) == 0:
        return {"mean_rank": float("nan"), "mrr": float("nan"), f"hits@{hits_at}": float("nan"), "map": float("nan"),
                "n_edges": 0}
    children = np.unique(test_edges[:, 0])
    rel = [np.asarray(ancestors[u], dtype=np.int64) for u in children]
    ranks = relevant_ranks(x[children], x, rel, geometry, exclude=children, filtered=True)
    held: dict[int, set[int]] = {}
    for c, p in test_edges.tolist():
        held.setdefault(c, set()).add(p)
    edge_ranks, aps = [], []
    for u, r_all, a in zip(children.tolist(), ranks, rel, strict=False):
        sel = np.asarray([p in held[u] for p in a.tolist()])
        r = r_all[sel]
        edge_ranks.append(r)
        aps.append(average_precision_from_ranks(r))
    r = np.concatenate(edge_ranks).astype(np.float64)
    return {"mean_rank": float(r.mean()), "mrr": float(np.mean(1.0 / r)),
            f"hits@{hits_at}": float(np.mean(r <= hits_at)),
            "map": float(np.mean(aps)), "n_edges": len(r)}
