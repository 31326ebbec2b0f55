"""Flat baselines: Euclidean space and the unit sphere (cosine geometry, the CLIP baseline)."""

from __future__ import annotations

import torch
from torch import Tensor

from hypalign.geometry.base import Manifold, as_float, safe_norm


class Euclidean(Manifold):
    """``R^D`` with ``d(x, y) = ||x - y||``; ``expmap0``/``logmap0`` are the identity."""

    name = "euclidean"

    def expmap0(self, u: Tensor) -> Tensor:
        return as_float(u)

    def logmap0(self, x: Tensor) -> Tensor:
        return as_float(x)

    def project(self, x: Tensor) -> Tensor:
        return as_float(x)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = as_float(x), as_float(y)
        return torch.sqrt(((x - y) ** 2).sum(-1).clamp_min(1e-30))

    def _dist_from_moments(self, m: Tensor) -> Tensor:
        """:meth:`dist` from the pair moments: ``sqrt(|x - y|^2)``."""
        return torch.sqrt(m[:, 0].clamp_min(1e-30))

    def contains(self, x: Tensor, atol: float = 1e-5) -> Tensor:
        return torch.isfinite(x).all(-1)

    def mean(self, x: Tensor, weights: Tensor | None = None, dim: int = 0) -> Tensor:
        x = as_float(x)
        if weights is None:
            return x.mean(dim)
        w = weights.to(x.dtype).unsqueeze(-1)
        return (w * x).sum(dim) / w.sum(dim)

    # q = ||x - y||^2 = [x, ||x||^2, 1] . [-2y, 1, ||y||^2]
    def _cdist_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        return torch.cat([x, x2, torch.ones_like(x2)], -1), torch.cat([-2.0 * y, torch.ones_like(y2), y2], -1)

    def _cdist_finish_(self, q: Tensor, tmp: Tensor) -> Tensor:
        return q.clamp_min_(1e-30).sqrt_()

    def _cdist_finish(self, q: Tensor) -> Tensor:
        return torch.sqrt(q.clamp_min(1e-30))

    def _cdist_bound_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``sum|terms| = |x|^2 + 2|x.y| + |y|^2 <= 2(|x|^2 + |y|^2) = [2|x|^2, 2] . [1, |y|^2]``."""
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        return torch.cat([2.0 * x2, torch.full_like(x2, 2.0)], -1), torch.cat([torch.ones_like(y2), y2], -1)

    def mips_vectors(self, x: Tensor, role: str) -> Tensor:
        """``[x, -|x|^2/2]`` (gallery) and ``[y, 1]`` (query): ``<y, x> - |x|^2/2 = (|y|^2 - |x - y|^2) / 2``."""
        if role == "gallery":
            return torch.cat([x, -0.5 * (x * x).sum(-1, keepdim=True)], dim=-1)
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=-1)


class Sphere(Manifold):
    """The unit sphere: embeddings are L2-normalised (``expmap0 = project = u / ||u||``).

    ``dist`` is the geodesic (great-circle) distance ``arccos(x.y)``, evaluated as
    ``2 asin(||x - y|| / 2)`` (stable near 0 and pi). It ranks exactly as cosine
    similarity ``x.y`` does (Hyp-ViT's and CLIP's baseline), and unlike ``1 - cos`` it
    is a metric, so δ-hyperbolicity is defined for it.
    """

    name = "sphere"

    def expmap0(self, u: Tensor) -> Tensor:
        u = as_float(u)
        return u / safe_norm(u)

    def logmap0(self, x: Tensor) -> Tensor:
        return as_float(x)

    def project(self, x: Tensor) -> Tensor:
        return self.expmap0(x)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = as_float(x), as_float(y)
        half = torch.sqrt(((x - y) ** 2).sum(-1).clamp_min(1e-30)) / 2
        return 2 * torch.asin(half.clamp_max(1.0))

    def _dist_from_moments(self, m: Tensor) -> Tensor:
        """:meth:`dist` from the pair moments: ``2 asin(min(|x - y| / 2, 1))``."""
        return 2 * torch.asin((torch.sqrt(m[:, 0].clamp_min(1e-30)) / 2).clamp_max(1.0))

    def similarity(self, x: Tensor, y: Tensor) -> Tensor:
        """Cosine similarity of unit vectors, paired."""
        return (as_float(x) * as_float(y)).sum(-1)

    def similarity_matrix(self, x: Tensor, y: Tensor, refine: bool = False) -> Tensor:
        """``(N, M)`` cosine similarities ``x @ y.T`` of unit vectors (CLIP's logits before the scale)."""
        return as_float(x) @ as_float(y).T

    def contains(self, x: Tensor, atol: float = 1e-5) -> Tensor:
        return torch.isfinite(x).all(-1) & ((x.double().norm(dim=-1) - 1).abs() <= max(atol, 1e-3))

    def mean(self, x: Tensor, weights: Tensor | None = None, dim: int = 0) -> Tensor:
        """Normalised (weighted) Euclidean mean: the extrinsic mean on the sphere."""
        return self.project(Euclidean.mean(self, x, weights, dim))

    # q = ||x - y||^2 / 4 = [x, ||x||^2, 1] . [-y/2, 1/4, ||y||^2/4] (= (1 - x.y) / 2 for exact unit vectors; the
    # norms keep it equal to the paired chord form for points that are unit only to rounding, e.g. float32 ones)
    def _cdist_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        return torch.cat([x, x2, torch.ones_like(x2)], -1), torch.cat([-0.5 * y, torch.full_like(y2, 0.25),
                                                                      0.25 * y2], -1)

    def _cdist_finish_(self, q: Tensor, tmp: Tensor) -> Tensor:
        return q.clamp_(1e-30, 1.0).sqrt_().asin_().mul_(2.0)

    def _cdist_finish(self, q: Tensor) -> Tensor:
        return 2.0 * torch.asin(torch.sqrt(q.clamp(1e-30, 1.0)))

    def _cdist_bound_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``sum|terms| = (|x|^2 + 2|x.y| + |y|^2) / 4 <= (|x|^2 + |y|^2) / 2 = [|x|^2/2, 1/2] . [1, |y|^2]``."""
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        return torch.cat([0.5 * x2, torch.full_like(x2, 0.5)], -1), torch.cat([torch.ones_like(y2), y2], -1)

    def mips_vectors(self, x: Tensor, role: str) -> Tensor:
        """The unit vectors themselves: the cosine ranks like ``-dist``."""
        return self.project(x)
