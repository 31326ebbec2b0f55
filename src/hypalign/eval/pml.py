"""pytorch-metric-learning interop: hyperbolic distances as PML ``BaseDistance`` objects.

With these, PML's losses, miners and ``AccuracyCalculator(knn_func=CustomKNN(dist))`` work in
hyperbolic space unchanged::

    from pytorch_metric_learning import losses
    from hypalign.eval.pml import PoincareDistance
    loss_fn = losses.ContrastiveLoss(distance=PoincareDistance(c=0.1))

Embeddings are taken as points of the geometry (``normalize_embeddings=False``); smaller is closer
(``is_inverted=False``). ``compute_mat`` is the geometry's chunked ``cdist``.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import BaseDistance

from hypalign.geometry import Lorentz, Manifold, PoincareBall


class GeometryDistance(BaseDistance):
    """Any hypalign geometry's geodesic distance as a PML distance."""

    def __init__(self, geometry: Manifold, **kwargs: object) -> None:
        kwargs.setdefault("normalize_embeddings", False)
        super().__init__(is_inverted=False, **kwargs)  # type: ignore[arg-type]
        self.geometry = geometry

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor | None) -> torch.Tensor:
        ref = query_emb if ref_emb is None else ref_emb
        return self.geometry.cdist(query_emb, ref.to(query_emb.dtype))

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        return self.geometry.dist(query_emb, ref_emb)


class PoincareDistance(GeometryDistance):
    """Poincaré-ball geodesic distance (curvature ``-c``)."""

    def __init__(self, c: float = 1.0, **kwargs: object) -> None:
        super().__init__(PoincareBall(c), **kwargs)


class LorentzDistance(GeometryDistance):
    """Lorentz-model geodesic distance (curvature ``-c``; space components)."""

    def __init__(self, c: float = 1.0, **kwargs: object) -> None:
        super().__init__(Lorentz(c), **kwargs)
