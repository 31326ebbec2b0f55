"""Image–text metrics (MERU, CLIP) in an embedding's own geometry, and what a class tree adds.

* **Cross-modal Recall@K** (:func:`cross_modal_recall`): ``R@K`` = fraction of queries with at least one relevant
  item among their K nearest (MERU §2.5: image_id → its captions, text → its images). Relevance is by caption
  *text*: the gallery of texts holds each distinct caption once, an image's relevant texts are its captions, a
  text's relevant images every image captioned with it — so the same emoji drawn in two styles, captioned alike,
  counts as relevant to both (instance ids would count the twin as a miss). Ranks from
  :func:`~hypalign.eval.retrieval.relevant_ranks` (exact, memory-bounded).
* **Tree metrics of predictions** (:func:`tree_metrics`), for class paths ``(level 0, …, leaf)`` of equal depth
  ``L`` under one root: the LCA height of a prediction ``h(p, t) = L - (number of leading levels p and t share)``
  (0 when right, ``L`` when not even the top level agrees);

  - *mistake severity* = mean ``h`` over the wrong predictions (Bertinetto et al. 2020);
  - *tree-induced error* = mean ``h`` over all predictions (the tree distance ``2h`` halved);
  - *hierarchical precision / recall* = ``sum |A(p) ∩ A(t)| / sum |A(p)|`` and ``/ sum |A(t)|`` with ``A`` the
    path's nodes below the root (Kiritchenko et al. 2005; micro-averaged; equal when every path has depth ``L``).
* **Generality** (:func:`generality_tau`): Kendall's τ-b between a point's depth in the tree (the coarsest level 0,
  …, images deepest) and its distance from the origin ``d(0, x)`` — MERU's claim that general concepts sit near
  the origin is τ > 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hypalign.eval.retrieval import relevant_ranks
from hypalign.geometry import Manifold

DEFAULT_RECALL_KS = (1, 5, 10)


def recall_from_ranks(ranks: Sequence[np.ndarray], ks: Sequence[int] = DEFAULT_RECALL_KS) -> dict[str, float]:
    """``recall@K`` = fraction of queries whose best-ranked relevant item is within ``K`` (queries without a
    relevant item left out)."""
    best = np.array([r.min() for r in ranks if len(r)], dtype=np.int64)
    return {f"recall@{k}": float((best <= k).mean()) if len(best) else float("nan") for k in ks}


def caption_relevance(texts: Sequence[str], text_image: np.ndarray, n_images: int
                      ) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Distinct captions (first-seen order), each image's relevant caption ids and each caption's relevant images
    (module docstring: relevance by caption text)."""
    distinct: dict[str, int] = {}
    tid = np.array([distinct.setdefault(t, len(distinct)) for t in texts], dtype=np.int64)
    img_to_txt: list[set[int]] = [set() for _ in range(n_images)]
    txt_to_img: list[set[int]] = [set() for _ in range(len(distinct))]
    for t, i in zip(tid.tolist(), np.asarray(text_image).tolist(), strict=True):
        img_to_txt[i].add(t)
        txt_to_img[t].add(i)
    return (list(distinct), [np.array(sorted(s), dtype=np.int64) for s in img_to_txt],
            [np.array(sorted(s), dtype=np.int64) for s in txt_to_img])


def cross_modal_recall(images: torch.Tensor, texts: torch.Tensor, image_to_text: Sequence[np.ndarray],
                       text_to_image: Sequence[np.ndarray], geometry: Manifold,
                       ks: Sequence[int] = DEFAULT_RECALL_KS) -> dict[str, float]:
    """``i2t_recall@K`` and ``t2i_recall@K`` ranked by the geometry's distance; ``texts`` are the distinct captions'
    embeddings (:func:`caption_relevance`)."""
    out = {f"i2t_{k}": v for k, v in recall_from_ranks(relevant_ranks(images, texts, image_to_text, geometry),
                                                       ks).items()}
    out.update({f"t2i_{k}": v for k, v in recall_from_ranks(relevant_ranks(texts, images, text_to_image, geometry),
                                                            ks).items()})
    return out


def tree_metrics(pred: Sequence[Sequence[str]], true: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mistake severity, tree-induced error and hierarchical precision/recall of predicted class paths against the
    true ones (module docstring). Paths are coarsest first and all of one depth."""
    if len(pred) != len(true):
        raise ValueError(f"{len(pred)} predictions for {len(true)} items")
    if not len(true):
        raise ValueError("tree metrics of no predictions")
    depth = len(true[0])
    shared = np.empty(len(true), dtype=np.int64)
    for i, (p, t) in enumerate(zip(pred, true, strict=True)):
        if len(p) != depth or len(t) != depth:
            raise ValueError(f"item {i}: paths of depth {len(p)} and {len(t)}, expected {depth}")
        k = 0
        while k < depth and p[k] == t[k]:
            k += 1
        shared[i] = k
    h = depth - shared
    wrong = h > 0
    overlap = shared.sum() / (depth * len(true))
    return {"mistake_severity": float(h[wrong].mean()) if wrong.any() else 0.0,
            "tree_induced_error": float(h.mean()), "hierarchical_precision": float(overlap),
            "hierarchical_recall": float(overlap)}


def generality_tau(points: torch.Tensor, depth: np.ndarray, geometry: Manifold) -> dict[str, float]:
    """Kendall's τ-b between ``depth`` (0 the most general) and the distance from the origin of ``points``, with
    the mean distance from the origin at every depth."""
    from scipy.stats import kendalltau

    x = points.double()
    origin = torch.zeros(1, x.shape[1], dtype=x.dtype)
    if geometry.name == "sphere":  # no origin on the sphere: the norm before normalisation is not kept; report 0
        r = torch.zeros(x.shape[0], dtype=x.dtype)
    else:
        r = geometry.dist(origin, x)
    r_np = r.numpy()
    depth = np.asarray(depth)
    res = kendalltau(depth, r_np)
    out = {"generality_tau": float(res.statistic) if np.isfinite(res.statistic) else 0.0}
    for d in np.unique(depth).tolist():
        out[f"radius_depth{d}"] = float(r_np[depth == d].mean())
    return out


def image_traversal(image: torch.Tensor, texts: torch.Tensor, geometry: Manifold, steps: int = 50,
                    min_radius: float = 0.1) -> list[int]:
    """MERU's image traversal (spec §2.5): walk from the image ``(D,)`` to the origin along the geodesic
    (``expmap0`` of ``(1 - t) logmap0(image)``, ``steps`` points, the image first) and at each point take the nearest
    text ``(T, D)`` among those whose entailment cone contains the point (``ext - aper <= 0``; the others masked).
    Returns the distinct text indices met, in order (from the image's most specific text towards the most general);
    a point no cone contains contributes nothing. Needs a geometry with cones (Lorentz or Poincaré)."""
    from hypalign.geometry.cones import cone_margin_matrix

    u = geometry.logmap0(image.double().unsqueeze(0))
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64).unsqueeze(1)
    path = geometry.expmap0((1.0 - t) * u)[:-1]  # the origin itself is in every cone: no information there
    with torch.no_grad():
        d = geometry.cdist(path, texts.double())
        inside = cone_margin_matrix(texts, path, geometry, min_radius) >= 0
        d = torch.where(inside, d, torch.full_like(d, float("inf")))
        best = d.argmin(1)
        found = torch.isfinite(d.min(1).values)
    out: list[int] = []
    for b, ok in zip(best.tolist(), found.tolist(), strict=True):
        if ok and (not out or out[-1] != b) and b not in out:
            out.append(b)
    return out
