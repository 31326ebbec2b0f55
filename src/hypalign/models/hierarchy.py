"""An embedding table for hierarchy nodes in the Lorentz model, the Poincaré ball or Euclidean space.

Coordinates (``weight``, ``(N, D)``):

* ``lorentz``: space components of points on the hyperboloid of curvature ``-c``
  (``x_0 = sqrt(1/c + |x|^2)``; the MERU/hypalign convention of :class:`hypalign.geometry.Lorentz`).
  This chart covers the whole hyperboloid one-to-one, so unconstrained optimisers (Adam) move
  points exactly on the manifold with no projection; Riemannian SGD uses the exact exponential map.
* ``poincare``: points of the ball of radius ``1/sqrt(c)``; kept inside by projection after each step.
* ``euclidean``: plain coordinates (the baseline; distance ``|x - y|``).

With ``sparse=True`` (default) the table gets sparse gradients (only the rows a batch touches),
for ``SparseAdam`` or sparse Riemannian SGD: dense updates of a WordNet-sized table would cost
more than the loss itself.

Initialisation as in Nickel & Kiela (2017): uniform in ``[-init_scale, init_scale]``, near the origin.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hypalign.geometry import Manifold, get_geometry
from hypalign.losses.hierarchy import KINDS, hierarchy_nll_fused, hierarchy_nll_loss

HIERARCHY_MODELS = tuple(KINDS)


class HierarchyEmbedding(nn.Module):
    """``N`` node embeddings of dimension ``D`` in ``model`` (``lorentz``, ``poincare``, ``euclidean``)."""

    def __init__(
        self,
        n_nodes: int,
        dim: int,
        model: str = "lorentz",
        c: float = 1.0,
        init_scale: float = 1e-3,
        fused: bool = True,
        sparse: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if model not in HIERARCHY_MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(HIERARCHY_MODELS)}")
        if dim < 1 or n_nodes < 2:
            raise ValueError("need dim >= 1 and at least 2 nodes")
        self.model, self.c, self.fused, self.sparse = model, float(c), fused, sparse
        w = (torch.rand(n_nodes, dim, generator=generator) * 2 - 1) * init_scale
        self.weight = nn.Parameter(w)

    @property
    def geometry(self) -> Manifold:
        return get_geometry(self.model, c=self.c)

    def points(self) -> Tensor:
        """The embeddings in the coordinates of :attr:`geometry` (a detached copy)."""
        return self.weight.detach().clone()

    def forward(self, u: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Mean Nickel–Kiela loss of rows ``u`` against candidates ``v`` (positive first)."""
        if self.fused and self.weight.device.type == "cpu" and self.weight.dtype == torch.float32:
            return hierarchy_nll_fused(self.weight, u, v, mask, self.model, self.c, sparse=self.sparse)
        if self.sparse:
            raise ValueError("sparse gradients need the fused CPU float32 path; build with sparse=False")
        x = self.weight[u].unsqueeze(1).expand(-1, v.shape[1], -1)
        return hierarchy_nll_loss(self.geometry.dist(x, self.weight[v]), mask)

    @torch.no_grad()
    def project_(self, boundary_eps: float = 1e-5) -> None:
        """Poincaré: pull points back inside the ball (``|x| <= (1 - eps)/sqrt(c)``); no-op otherwise."""
        if self.model != "poincare":
            return
        max_norm = (1 - boundary_eps) / self.c**0.5
        norm = self.weight.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        self.weight.mul_(torch.where(norm > max_norm, max_norm / norm, torch.ones_like(norm)))
