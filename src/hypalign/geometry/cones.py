"""Entailment cones (Ganea et al. 2018; MERU, Desai et al. 2023 §3.2) in both hyperbolic models.

A point ``g`` (a caption, a GO term, an ancestor) *entails* ``s`` (an image, a protein, a descendant)
when ``s`` lies in the cone at ``g`` that opens away from the origin. With ``K = min_radius`` and
curvature ``-c``:

* half-aperture (MERU eq. 7): ``aper(g) = arcsin( clamp(2K / (sqrt(c) ||g||), -1 + eps, 1 - eps) )``,
  ``||g||`` the norm of the Lorentz space components;
* exterior angle (MERU eq. 8): ``ext(g, s)``, the angle at ``g`` between the ray from the origin and
  the geodesic to ``s`` (hyperbolic law of cosines, :func:`hypalign.geometry.lorentz.oxy_angle`);
* ``s`` is inside the cone of ``g`` iff ``ext(g, s) <= aper(g)``; the cone margin is
  ``aper(g) - ext(g, s)`` (positive inside, bounded in ``[-pi, pi/2]`` whatever the norms).

Both hyperbolic models give the same numbers: Poincaré points are mapped to the Lorentz model first
(:func:`~hypalign.geometry.convert.poincare_to_lorentz`, an isometry fixing the origin, so cones,
apertures and angles are the same). Other geometries have no cones and raise ``ValueError``.
Shapes: ``g``, ``s`` are ``(..., D)`` and broadcast; the ``*_matrix`` forms take ``(N, D)`` and ``(M, D)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hypalign.geometry.base import Manifold, as_float
from hypalign.geometry.convert import poincare_to_lorentz
from hypalign.geometry.lorentz import half_aperture as _lorentz_half_aperture
from hypalign.geometry.lorentz import oxy_angle as _lorentz_oxy_angle
from hypalign.geometry.lorentz import oxy_angle_matrix as _lorentz_oxy_angle_matrix

#: MERU's ``K``: points closer than ``2K / sqrt(c)`` to the origin get the widest cone (about pi/2)
MIN_RADIUS = 0.1


def has_cones(geometry: Manifold) -> bool:
    """Whether entailment cones are defined for ``geometry`` (the Lorentz model and the Poincaré ball)."""
    return geometry.name in ("lorentz", "poincare")


def to_lorentz(x: Tensor, geometry: Manifold) -> tuple[Tensor, Tensor]:
    """``(space components in the Lorentz model, c)`` of points of a hyperbolic ``geometry``."""
    if not has_cones(geometry):
        raise ValueError(f"entailment cones need a hyperbolic geometry (lorentz or poincare), got {geometry.name}")
    x = as_float(x)
    c = geometry.c.to(dtype=x.dtype, device=x.device)  # type: ignore[attr-defined]
    return (x if geometry.name == "lorentz" else poincare_to_lorentz(x, c)), c


def half_aperture(g: Tensor, geometry: Manifold, min_radius: float = MIN_RADIUS) -> Tensor:
    """``aper(g)``, shape ``g.shape[:-1]``."""
    x, c = to_lorentz(g, geometry)
    return _lorentz_half_aperture(x, c, min_radius)


def exterior_angle(g: Tensor, s: Tensor, geometry: Manifold) -> Tensor:
    """``ext(g, s)`` of paired (broadcasting) rows."""
    x, c = to_lorentz(g, geometry)
    y, _ = to_lorentz(s, geometry)
    return _lorentz_oxy_angle(x, y, c)


def exterior_angle_matrix(g: Tensor, s: Tensor, geometry: Manifold) -> Tensor:
    """``(len(g), len(s))`` exterior angles at every ``g`` towards every ``s`` (one matrix product)."""
    x, c = to_lorentz(g, geometry)
    y, _ = to_lorentz(s, geometry)
    return _lorentz_oxy_angle_matrix(x, y, c)


def cone_violation(g: Tensor, s: Tensor, geometry: Manifold, min_radius: float = MIN_RADIUS) -> Tensor:
    """``max(0, ext(g, s) - aper(g))`` of paired rows: 0 inside the cone (MERU eq. 9 before the mean)."""
    return torch.relu(exterior_angle(g, s, geometry) - half_aperture(g, geometry, min_radius))


def cone_margin_matrix(g: Tensor, s: Tensor, geometry: Manifold, min_radius: float = MIN_RADIUS) -> Tensor:
    """``(len(s), len(g))`` margins ``aper(g_j) - ext(g_j, s_i)``: positive where ``g_j`` entails ``s_i``."""
    x, c = to_lorentz(g.float(), geometry)
    y, _ = to_lorentz(s.float(), geometry)
    return (_lorentz_half_aperture(x, c, min_radius)[:, None] - _lorentz_oxy_angle_matrix(x, y, c)).T
