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

Initialisation as in Nickel & Kiela (2017): uniform in ``[-init_scale, init_scale]``, near the origin;
or :func:`hierarchy_init` (placed from the hierarchy, copied into ``weight`` by the recipe).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hypalign.geometry import POINCARE_MAX_RADIUS, Manifold, get_geometry
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
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype {dtype}: expected torch.float32 or torch.float64")
        if model not in HIERARCHY_MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(HIERARCHY_MODELS)}")
        if dim < 1 or n_nodes < 2:
            raise ValueError("need dim >= 1 and at least 2 nodes")
        self.model, self.c, self.fused, self.sparse = model, float(c), fused, sparse
        w = (torch.rand(n_nodes, dim, generator=generator) * 2 - 1) * init_scale
        self.weight = nn.Parameter(w.to(dtype))

    @property
    def geometry(self) -> Manifold:
        return get_geometry(self.model, c=self.c)

    def points(self) -> Tensor:
        """The embeddings in the coordinates of :attr:`geometry` (a detached copy)."""
        return self.weight.detach().clone()

    def forward(self, u: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Mean Nickel–Kiela loss of rows ``u`` against candidates ``v`` (positive first)."""
        if self.fused and self.weight.device.type == "cpu" and self.weight.dtype in (torch.float32, torch.float64):
            return hierarchy_nll_fused(self.weight, u, v, mask, self.model, self.c, sparse=self.sparse)
        if self.sparse:
            raise ValueError("sparse gradients need the fused CPU path; build with sparse=False")
        x = self.weight[u].unsqueeze(1).expand(-1, v.shape[1], -1)
        return hierarchy_nll_loss(self.geometry.dist(x, self.weight[v]), mask)

    @torch.no_grad()
    def project_(self) -> None:
        """Poincaré: pull points back within geodesic radius ``R / sqrt(c)`` of the origin, ``R =
        POINCARE_MAX_RADIUS[dtype]`` (``|x| <= tanh(R / 2) / sqrt(c)``: ``1 - 1.2e-5`` for float32); no-op
        otherwise."""
        if self.model != "poincare":
            return
        sc = self.c**0.5
        max_norm = math.tanh(POINCARE_MAX_RADIUS[self.weight.dtype] / 2) / sc
        norm = self.weight.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        self.weight.mul_(torch.where(norm > max_norm, max_norm / norm, torch.ones_like(norm)))


def hierarchy_init(parents: list[list[int]], order: list[int], dim: int, model: str = "lorentz", c: float = 1.0,
                   spread: float = 1.5, step: float = 1.0, decay: float = 0.5, seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Points placed from the hierarchy itself, one level further out per generation (a starting point for
    training, in the spirit of the combinatorial constructions of Sarkar 2011 / Sala et al. 2018).

    Roots lie at geodesic radius ``0.1`` in random directions. Each node, visited parents first (``order``),
    takes the direction of its deepest parent ``p`` plus Gaussian noise ``spread * decay**depth(p)`` per
    coordinate (renormalised: sibling subtrees fan out widely near the root and ever more narrowly below) at
    geodesic radius ``r(p) + step``. Coordinates of ``model`` at curvature ``-c``: Lorentz space components
    ``sinh(sqrt(c) r) / sqrt(c) * u``, Poincaré ``tanh(sqrt(c) r / 2) / sqrt(c) * u`` (the step shrunk so the
    deepest node stays within radius ``POINCARE_MAX_RADIUS[dtype] / sqrt(c)``, what ``dtype`` keeps inside the ball),
    Euclidean ``r * u``. ``(len(parents), dim)`` in ``dtype``."""
    import numpy as np

    if model not in HIERARCHY_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(HIERARCHY_MODELS)}")
    rng = np.random.default_rng(seed)
    n = len(parents)
    dirs = np.zeros((n, dim))
    depth = np.zeros(n, dtype=np.int64)
    for v in order:
        ps = parents[v]
        if not ps:
            d = rng.standard_normal(dim)
        else:
            p = max(ps, key=lambda q: depth[q])
            depth[v] = depth[p] + 1
            d = dirs[p] + spread * decay ** depth[p] * rng.standard_normal(dim)
        dirs[v] = d / max(np.linalg.norm(d), 1e-12)
    if model == "poincare" and depth.max() > 0:
        step = min(step, (POINCARE_MAX_RADIUS[dtype] / c**0.5 - 0.1) / depth.max())
    r = 0.1 + step * depth
    sc = c**0.5
    if model == "lorentz":
        scale = np.sinh(sc * r) / sc
    elif model == "poincare":
        scale = np.tanh(sc * r / 2) / sc
    else:
        scale = r
    return torch.from_numpy(scale[:, None] * dirs).to(dtype)
