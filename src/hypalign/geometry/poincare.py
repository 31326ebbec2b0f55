"""The Poincaré ball of curvature ``-c``: ``{x : c ||x||^2 < 1}``.

Metric ``g_x = lambda_x^2 I`` with conformal factor ``lambda_x = 2 / (1 - c||x||^2)``
(Nickel & Kiela 2017; Ganea et al. 2018). Distance

    d(x, y) = (1/sqrt(c)) arccosh(1 + 2c||x - y||^2 / ((1 - c||x||^2)(1 - c||y||^2)))
            = (2/sqrt(c)) asinh( sqrt(c) ||x - y|| / sqrt((1 - c||x||^2)(1 - c||y||^2)) ),

which equals the Möbius form ``(2/sqrt(c)) artanh(sqrt(c) ||(-x) (+)_c y||)`` used by
Hyp-ViT. The ``asinh`` form is used here: it has no ``arccosh`` near 1, so small
distances keep their relative precision and the gradient is finite everywhere.

Exponential map at the origin, two conventions (``convention=`` argument):

* ``"geoopt"`` (default; Hyp-ViT, geoopt): ``expmap0(u) = tanh(sqrt(c)||u||) u / (sqrt(c)||u||)``.
  This is the Riemannian exponential map of ``g`` with tangent vectors in Euclidean
  coordinates; since ``lambda_0 = 2``, ``d(0, expmap0(u)) = 2 ||u||``.
* ``"half"``: ``expmap0(u) = tanh(sqrt(c)||u||/2) u / (sqrt(c)||u||)``, so
  ``d(0, expmap0(u)) = ||u||``; it agrees with :meth:`Lorentz.expmap0` through the
  isometry :func:`hypalign.geometry.lorentz_to_poincare`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from hypalign.geometry.base import CurvedManifold, as_float, safe_norm

Convention = Literal["geoopt", "half"]
#: Hyp-ViT clamps the tanh argument to +-15.
_TANH_MAX = 15.0
#: the largest geodesic radius, in units of ``1/sqrt(c)``, at which a stored point keeps its precision, per dtype:
#: ``1 - c|x|^2 = 1 / cosh^2(sqrt(c) r / 2)`` rounds to zero in float32 beyond ~12; float64 keeps ~1e-4 relative
#: precision at 28 (used to bound trained hierarchy embeddings and to pick an index's storage precision)
POINCARE_MAX_RADIUS = {torch.float32: 12.0, torch.float64: 28.0}


def _scale(convention: Convention) -> float:
    if convention == "geoopt":
        return 1.0
    if convention == "half":
        return 0.5
    raise ValueError(f"unknown expmap0 convention {convention!r}; use 'geoopt' or 'half'")


def project(x: Tensor, c: Tensor | float, boundary_eps: float = 1e-3) -> Tensor:
    """Rescale points outside radius ``(1 - boundary_eps)/sqrt(c)`` onto that radius (Hyp-ViT uses 1e-3)."""
    max_norm = (1.0 - boundary_eps) / (c**0.5)
    norm = safe_norm(x)
    return torch.where(norm > max_norm, x / norm * max_norm, x)


def expmap0(u: Tensor, c: Tensor | float, convention: Convention = "geoopt") -> Tensor:
    """``tanh(s sqrt(c)||u||) u / (sqrt(c)||u||)`` with ``s = 1`` (geoopt) or ``1/2`` (half); no projection."""
    u = as_float(u)
    sqrt_c = c**0.5
    norm = safe_norm(u)
    arg = (_scale(convention) * sqrt_c * norm).clamp_max(_TANH_MAX)
    return torch.tanh(arg) * u / (sqrt_c * norm)


def logmap0(x: Tensor, c: Tensor | float, convention: Convention = "geoopt") -> Tensor:
    """Inverse of :func:`expmap0`: ``artanh(sqrt(c)||x||) x / (s sqrt(c)||x||)``."""
    x = as_float(x)
    sqrt_c = c**0.5
    norm = safe_norm(x)
    eps = torch.finfo(x.dtype).eps
    arg = (sqrt_c * norm).clamp_max(1.0 - eps)
    return torch.atanh(arg) * x / (_scale(convention) * sqrt_c * norm)


def _one_minus_c_sq(x: Tensor, c: Tensor | float) -> Tensor:
    """``1 - c||x||^2`` floored at a tiny positive value (points on or past the boundary stay finite). For float32
    points the squared norm is accumulated in float64: near the boundary the difference cancels, and float32
    rounding of ``||x||^2`` alone would cost ``eps / (1 - c||x||^2)`` of relative precision."""
    if x.dtype == torch.float32 and x.device.type == "cpu":  # the norm reduced in float64, no float64 copy
        c64 = c.double() if isinstance(c, Tensor) else c
        sq = torch.linalg.vector_norm(x, dim=-1, dtype=torch.float64).square()
        return (1.0 - c64 * sq).clamp_min(1e-15).to(x.dtype)
    return (1.0 - c * (x * x).sum(-1)).clamp_min(1e-15)


def dist(x: Tensor, y: Tensor, c: Tensor | float) -> Tensor:
    """Paired geodesic distance (broadcasting), ``asinh`` form (see module docstring)."""
    x, y = as_float(x), as_float(y)
    diff_sq = ((x - y) ** 2).sum(-1).clamp_min(1e-30)
    denom = _one_minus_c_sq(x, c) * _one_minus_c_sq(y, c)
    sqrt_c = c**0.5
    return (2.0 / sqrt_c) * torch.asinh(sqrt_c * torch.sqrt(diff_sq / denom))


def mobius_add(x: Tensor, y: Tensor, c: Tensor | float, den_eps: float = 0.0) -> Tensor:
    """Möbius addition ``x (+)_c y`` (Ungar; Ganea et al. 2018).

    ``((1 + 2c<x,y> + c||y||^2) x + (1 - c||x||^2) y) / (1 + 2c<x,y> + c^2||x||^2||y||^2 + den_eps)``;
    Hyp-ViT's code uses ``den_eps=1e-5``, which shifts its distances by ~1e-5 relative.
    """
    xy = (x * y).sum(-1, keepdim=True)
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c * c * x2 * y2 + den_eps
    return num / den.clamp_min(1e-15)


def dist_mobius(x: Tensor, y: Tensor, c: Tensor | float, den_eps: float = 0.0) -> Tensor:
    """Hyp-ViT's distance ``(2/sqrt(c)) artanh(sqrt(c) ||(-x) (+)_c y||)``; equal to :func:`dist` when
    ``den_eps=0``. ``den_eps=1e-5`` reproduces the reference code's numbers exactly (spec §0.3)."""
    sqrt_c = c**0.5
    n = mobius_add(-x, y, c, den_eps).norm(dim=-1)
    eps = torch.finfo(n.dtype).eps
    return (2.0 / sqrt_c) * torch.atanh((sqrt_c * n).clamp_max(1 - eps))


def einstein_midpoint(x: Tensor, c: Tensor | float, weights: Tensor | None = None, dim: int = 0) -> Tensor:
    """Weighted Einstein midpoint, computed in the Klein model (Ungar 2008; Gulcehre et al. 2019).

    ``k = 2x/(1 + c||x||^2)``, ``gamma = 1/sqrt(1 - c||k||^2)``,
    ``m_K = sum w gamma k / sum w gamma``, mapped back with ``m = m_K / (1 + sqrt(1 - c||m_K||^2))``.
    """
    x = as_float(x)
    x2 = (x * x).sum(-1, keepdim=True)
    k = 2 * x / (1 + c * x2)
    gamma = 1.0 / torch.sqrt((1 - c * (k * k).sum(-1, keepdim=True)).clamp_min(1e-15))
    w = gamma if weights is None else gamma * weights.to(x.dtype).unsqueeze(-1)
    mk = (w * k).sum(dim) / w.sum(dim)
    return mk / (1 + torch.sqrt((1 - c * (mk * mk).sum(-1, keepdim=True)).clamp_min(0)))


class PoincareBall(CurvedManifold):
    """Poincaré ball ``{x : c||x||^2 < 1}`` of curvature ``-c``.

    Args:
        c: curvature magnitude (Hyp-ViT uses 0.1).
        learnable: learn ``log c`` (clamped to ``[c_min, c_max]``).
        convention: ``"geoopt"`` (Hyp-ViT) or ``"half"`` exponential map; see module docstring.
        boundary_eps: ``project`` keeps points within radius ``(1 - boundary_eps)/sqrt(c)``
            (Hyp-ViT: 1e-3, applied after ``expmap0``).
    """

    name = "poincare"

    def __init__(
        self,
        c: float = 1.0,
        learnable: bool = False,
        c_min: float | None = None,
        c_max: float | None = None,
        convention: Convention = "geoopt",
        boundary_eps: float = 1e-3,
    ) -> None:
        super().__init__(c, learnable, c_min, c_max)
        _scale(convention)
        self.convention: Convention = convention
        self.boundary_eps = boundary_eps

    def expmap0(self, u: Tensor) -> Tensor:
        """Map tangent vectors at the origin onto the ball, then :meth:`project`."""
        c = self._c(as_float(u))
        return project(expmap0(u, c, self.convention), c, self.boundary_eps)

    def logmap0(self, x: Tensor) -> Tensor:
        return logmap0(x, self._c(as_float(x)), self.convention)

    def project(self, x: Tensor) -> Tensor:
        return project(as_float(x), self._c(as_float(x)), self.boundary_eps)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return dist(x, y, self._c(as_float(x)))

    def mobius_add(self, x: Tensor, y: Tensor) -> Tensor:
        return mobius_add(x, y, self._c(x))

    def mips_vectors(self, x: Tensor, role: str) -> Tensor:
        """Through the isometric Lorentz model (:meth:`Lorentz.mips_vectors` of the same curvature)."""
        from hypalign.geometry.convert import poincare_to_lorentz
        from hypalign.geometry.lorentz import Lorentz

        c = self._c(x)
        return Lorentz(float(c)).mips_vectors(poincare_to_lorentz(x, c), role)

    def contains(self, x: Tensor, atol: float = 1e-5) -> Tensor:
        c = float(self.c)
        return torch.isfinite(x).all(-1) & (c * (x.double() ** 2).sum(-1) < 1.0 - atol)

    def mean(self, x: Tensor, weights: Tensor | None = None, dim: int = 0) -> Tensor:
        """Einstein midpoint (see :func:`einstein_midpoint`)."""
        return einstein_midpoint(x, self._c(as_float(x)), weights, dim)

    # all pairs: q = c ||x - y||^2 / ((1-c||x||^2)(1-c||y||^2)) = [x', a_x, b_x] . [-2 y', b_y, a_y]
    # with x' = x / dx, a_x = ||x||^2 / dx, b_x = 1 / dx (dx = 1 - c||x||^2), scaled by c.
    def _cdist_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        c = self._c(x)
        dx = _one_minus_c_sq(x, c).unsqueeze(-1)
        dy = _one_minus_c_sq(y, c).unsqueeze(-1)
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        xf = torch.cat([x / dx, x2 / dx, 1.0 / dx], dim=-1) * c
        yf = torch.cat([-2.0 * y / dy, 1.0 / dy, y2 / dy], dim=-1)
        return xf, yf

    def _dist_from_moments(self, m: Tensor) -> Tensor:
        """:func:`dist` from the pair moments: ``(2/sqrt c) asinh(sqrt(c |x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2))))``,
        each ``1 - c|x|^2`` floored as :func:`dist` floors it (points on or past the boundary stay finite)."""
        c = self._c(m)
        denom = (1.0 - c * m[:, 2]).clamp_min(1e-15) * (1.0 - c * m[:, 3]).clamp_min(1e-15)
        return (2.0 / c**0.5) * torch.asinh(torch.sqrt(c * m[:, 0].clamp_min(1e-30) / denom))

    def _cdist_bound_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``sum|terms| = c(|x|^2 + 2|x.y| + |y|^2) / (d_x d_y) <= 2c(|x|^2 + |y|^2) / (d_x d_y)
        = [2c|x|^2 / d_x, 2c / d_x] . [1 / d_y, |y|^2 / d_y]`` (``d = 1 - c|x|^2``)."""
        c = self._c(x)
        dx = _one_minus_c_sq(x, c).unsqueeze(-1)
        dy = _one_minus_c_sq(y, c).unsqueeze(-1)
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1, keepdim=True)
        return torch.cat([2 * c * x2 / dx, 2 * c / dx], -1), torch.cat([1.0 / dy, y2 / dy], -1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", convention={self.convention!r}"
