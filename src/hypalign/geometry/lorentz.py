"""The Lorentz (hyperboloid) model of curvature ``-c``, space components only.

Points are ``x in R^D``; the full point is ``(x_t, x)`` on
``{<X, X>_L = -1/c, x_t > 0}`` with ``x_t = sqrt(1/c + ||x||^2)`` (MERU convention,
Desai et al. 2023, §3). Lorentzian inner product ``<x, y>_L = x.y - x_t y_t``.

Distance ``d(x, y) = (1/sqrt(c)) arccosh(-c <x, y>_L)``. It is evaluated as

    d = (2/sqrt(c)) asinh( sqrt(c) ||X - Y||_L / 2 ),   ||X - Y||_L^2 = ||x - y||^2 - (x_t - y_t)^2,

with ``x_t - y_t = (x - y).(x + y) / (x_t + y_t)``, which is exact algebra but keeps
small distances accurate and the gradient finite at ``x = y``. (MERU clamps the
``arccosh`` argument at ``1 + 1e-8`` and so reports ``d(x, x) ~ 1.4e-4``; here ``d(x, x) = 0``.)

Exponential and logarithmic maps at the origin ``O = (1/sqrt(c), 0)``:
``expmap0(v) = sinh(sqrt(c)||v||) v / (sqrt(c)||v||)`` (so ``d(O, expmap0(v)) = ||v||``) and
``logmap0(x) = asinh(sqrt(c)||x||) x / (sqrt(c)||x||)``.

Entailment cones (Ganea et al. 2018; MERU §3.2): :func:`half_aperture` and :func:`oxy_angle`
(all pairs: :func:`oxy_angle_matrix`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hypalign.geometry.base import CurvedManifold, as_float, safe_norm

#: MERU clamps the sinh argument to asinh(2^15) so the time component stays finite in fp32.
_SINH_MAX = math.asinh(2.0**15)


def time_component(x: Tensor, c: Tensor | float) -> Tensor:
    """``x_t = sqrt(1/c + ||x||^2)``, shape ``x.shape[:-1]``."""
    return torch.sqrt(1.0 / c + (x * x).sum(-1))


def inner(x: Tensor, y: Tensor, c: Tensor | float) -> Tensor:
    """Lorentzian inner product ``<x, y>_L = x.y - x_t y_t`` (paired, broadcasting)."""
    return (x * y).sum(-1) - time_component(x, c) * time_component(y, c)


def expmap0(v: Tensor, c: Tensor | float) -> Tensor:
    """``sinh(sqrt(c)||v||) v / (sqrt(c)||v||)``; the sinh argument is clamped to ``asinh(2^15)``."""
    v = as_float(v)
    sqrt_c = c**0.5
    norm = safe_norm(v)
    arg = (sqrt_c * norm).clamp_max(_SINH_MAX)
    return torch.sinh(arg) * v / (sqrt_c * norm)


def logmap0(x: Tensor, c: Tensor | float) -> Tensor:
    """``asinh(sqrt(c)||x||) x / (sqrt(c)||x||)`` (= MERU's ``arccosh(sqrt(1 + c||x||^2))`` form)."""
    x = as_float(x)
    sqrt_c = c**0.5
    norm = safe_norm(x)
    return torch.asinh(sqrt_c * norm) * x / (sqrt_c * norm)


def dist(x: Tensor, y: Tensor, c: Tensor | float) -> Tensor:
    """Paired geodesic distance (broadcasting); see the module docstring for the stable form."""
    x, y = as_float(x), as_float(y)
    xt, yt = time_component(x, c), time_component(y, c)
    diff = x - y
    dt = (diff * (x + y)).sum(-1) / (xt + yt)
    sq = ((diff * diff).sum(-1) - dt * dt).clamp_min(1e-30)
    sqrt_c = c**0.5
    return (2.0 / sqrt_c) * torch.asinh(sqrt_c * torch.sqrt(sq) / 2.0)


def half_aperture(x: Tensor, c: Tensor | float, min_radius: float = 0.1, eps: float = 1e-7) -> Tensor:
    """Half-aperture of the entailment cone at ``x`` (MERU eq. 7):
    ``arcsin(clamp(2K / (sqrt(c)||x|| + 1e-8), -1 + eps, 1 - eps))`` with ``K = min_radius``.
    Points with ``||x|| < 2K/sqrt(c)`` get the widest cone, about pi/2."""
    x = as_float(x)
    ratio = 2 * min_radius / (c**0.5 * x.norm(dim=-1) + 1e-8)
    return torch.asin(ratio.clamp(-1 + eps, 1 - eps))


def oxy_angle(x: Tensor, y: Tensor, c: Tensor | float, eps: float = 1e-7) -> Tensor:
    """Exterior angle at ``x`` of the triangle ``O, x, y`` (MERU eq. 8; hyperbolic law of cosines):

    ``arccos( (y_t + x_t c<x,y>_L) / (||x|| sqrt((c<x,y>_L)^2 - 1)) )``,

    the quantity ``(c<x,y>_L)^2 - 1`` floored at 1e-8 and the arccos argument clamped to
    ``+-(1 - eps)``. ``y`` is inside the cone of ``x`` iff ``oxy_angle(x, y) <= half_aperture(x)``.
    """
    x, y = as_float(x), as_float(y)
    xt, yt = time_component(x, c), time_component(y, c)
    c_xy = c * ((x * y).sum(-1) - xt * yt)
    num = yt + xt * c_xy
    den = x.norm(dim=-1) * torch.sqrt((c_xy * c_xy - 1).clamp_min(1e-8))
    return torch.acos((num / (den + 1e-8)).clamp(-1 + eps, 1 - eps))


def oxy_angle_matrix(x: Tensor, y: Tensor, c: Tensor | float, eps: float = 1e-7) -> Tensor:
    """:func:`oxy_angle` for every pair: ``(len(x), len(y))`` exterior angles at the rows of ``x`` (the
    general points, e.g. GO terms) towards the rows of ``y``; one matrix product, no ``(N, M, D)`` tensor."""
    x, y = as_float(x), as_float(y)
    xt, yt = time_component(x, c), time_component(y, c)
    c_xy = c * (x @ y.T - xt[:, None] * yt[None, :])
    num = yt[None, :] + xt[:, None] * c_xy
    den = x.norm(dim=-1)[:, None] * torch.sqrt((c_xy * c_xy - 1).clamp_min(1e-8))
    return torch.acos((num / (den + 1e-8)).clamp(-1 + eps, 1 - eps))


def centroid(x: Tensor, c: Tensor | float, weights: Tensor | None = None, dim: int = 0) -> Tensor:
    """Lorentz centroid (Law et al. 2019): the weighted sum of full points rescaled onto the hyperboloid,
    ``mu = S / (sqrt(c) sqrt(|<S, S>_L|))`` with ``S = sum_i w_i (x_t, x)_i``. Returns space components."""
    x = as_float(x)
    w = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device) if weights is None else weights.to(x.dtype)
    st = (w * time_component(x, c)).sum(dim)
    ss = (w.unsqueeze(-1) * x).sum(dim)
    norm_l = torch.sqrt((st * st - (ss * ss).sum(-1)).clamp_min(1e-15))
    return ss / (c**0.5 * norm_l).unsqueeze(-1)


class Lorentz(CurvedManifold):
    """Lorentz model of curvature ``-c``; points are space components (MERU convention).

    Args:
        c: curvature magnitude. MERU learns it: ``Lorentz(1.0, learnable=True)`` keeps
            ``c`` in ``[0.1, 10]``.
        learnable, c_min, c_max: see :class:`~hypalign.geometry.base.CurvedManifold`.
    """

    name = "lorentz"

    def expmap0(self, u: Tensor) -> Tensor:
        return expmap0(u, self._c(as_float(u)))

    def logmap0(self, x: Tensor) -> Tensor:
        return logmap0(x, self._c(as_float(x)))

    def project(self, x: Tensor) -> Tensor:
        """Space components are unconstrained: every finite ``x`` is a point. Identity."""
        return as_float(x)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return dist(x, y, self._c(as_float(x)))

    def _dist_from_moments(self, m: Tensor) -> Tensor:
        """:func:`dist` from the pair moments: ``x_t - y_t = (x - y).(x + y) / (x_t + y_t)``, Minkowski
        ``|x - y|_L^2 = |x - y|^2 - (x_t - y_t)^2``, ``d = (2/sqrt c) asinh(sqrt(c |x - y|_L^2) / 2)``."""
        c = self._c(m)
        dt = m[:, 1] / (torch.sqrt(1.0 / c + m[:, 2]) + torch.sqrt(1.0 / c + m[:, 3]))
        sq = (m[:, 0] - dt * dt).clamp_min(1e-30)
        return (2.0 / c**0.5) * torch.asinh(c**0.5 * torch.sqrt(sq) / 2.0)

    def inner(self, x: Tensor, y: Tensor) -> Tensor:
        return inner(as_float(x), as_float(y), self._c(as_float(x)))

    def time(self, x: Tensor) -> Tensor:
        return time_component(as_float(x), self._c(as_float(x)))

    def half_aperture(self, x: Tensor, min_radius: float = 0.1) -> Tensor:
        return half_aperture(x, self._c(as_float(x)), min_radius)

    def oxy_angle(self, x: Tensor, y: Tensor) -> Tensor:
        return oxy_angle(x, y, self._c(as_float(x)))

    def oxy_angle_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        return oxy_angle_matrix(x, y, self._c(as_float(x)))

    def contains(self, x: Tensor, atol: float = 1e-5) -> Tensor:
        return torch.isfinite(x).all(-1)

    def mips_vectors(self, x: Tensor, role: str) -> Tensor:
        """``[x, x_t]`` (gallery) and ``[y, -y_t]`` (query): their inner product is ``-<x, y>_L``, which grows with
        ``cosh(sqrt(c) d)``: the Lorentz distance as a maximum inner product after negating the query's time."""
        xt = time_component(x, self._c(x)).unsqueeze(-1)
        return torch.cat([x, xt if role == "gallery" else -xt], dim=-1)

    def mean(self, x: Tensor, weights: Tensor | None = None, dim: int = 0) -> Tensor:
        """Lorentz centroid (see :func:`centroid`)."""
        return centroid(x, self._c(as_float(x)), weights, dim)

    # all pairs: q = (c/2)(x_t y_t - x.y) - 1/2 = c ||X-Y||_L^2 / 4, so d = (2/sqrt(c)) asinh(sqrt(q)).
    def _cdist_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        c = self._c(x)
        xt = time_component(x, c).unsqueeze(-1)
        yt = time_component(y, c).unsqueeze(-1)
        xf = torch.cat([x, xt, torch.ones_like(xt)], dim=-1) * (c / 2)
        yf = torch.cat([-y, yt, torch.full_like(yt, -1.0) / c], dim=-1)
        return xf, yf

    def _cdist_bound_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``sum|terms| = (c/2)(|x.y| + x_t y_t) + 1/2 <= c x_t y_t + 1/2 = [c x_t, 1/2] . [y_t, 1]``."""
        c = self._c(x)
        xt = time_component(x, c).unsqueeze(-1)
        yt = time_component(y, c).unsqueeze(-1)
        return torch.cat([c * xt, torch.full_like(xt, 0.5)], -1), torch.cat([yt, torch.ones_like(yt)], -1)
