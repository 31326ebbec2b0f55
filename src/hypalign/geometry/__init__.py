"""Geometry core: Poincaré ball, Lorentz hyperboloid, sphere and Euclidean space.

>>> from hypalign.geometry import PoincareBall, Lorentz, Sphere, Euclidean

All share one interface: ``expmap0``, ``logmap0``, ``dist`` (paired), ``cdist`` (all
pairs, chunked), ``project``, ``contains``, ``mean`` and ``feature_clip``.
"""

from hypalign.geometry.base import Manifold, feature_clip
from hypalign.geometry.convert import lorentz_full, lorentz_to_poincare, poincare_to_lorentz
from hypalign.geometry.euclidean import Euclidean, Sphere
from hypalign.geometry.lorentz import Lorentz
from hypalign.geometry.poincare import POINCARE_MAX_RADIUS, PoincareBall

GEOMETRIES = ("euclidean", "sphere", "poincare", "lorentz")


def get_geometry(name: str, c: float = 1.0, **kwargs: object) -> Manifold:
    """Build a geometry by name (``euclidean``, ``sphere``/``cosine``, ``poincare``, ``lorentz``)."""
    key = name.lower()
    if key == "euclidean":
        return Euclidean()
    if key in ("sphere", "cosine"):
        return Sphere()
    if key == "poincare":
        return PoincareBall(c=c, **kwargs)  # type: ignore[arg-type]
    if key == "lorentz":
        return Lorentz(c=c, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown geometry {name!r}; expected one of {', '.join(GEOMETRIES)} (or 'cosine')")


__all__ = [
    "GEOMETRIES",
    "POINCARE_MAX_RADIUS",
    "Euclidean",
    "Lorentz",
    "Manifold",
    "PoincareBall",
    "Sphere",
    "feature_clip",
    "get_geometry",
    "lorentz_full",
    "lorentz_to_poincare",
    "poincare_to_lorentz",
]
