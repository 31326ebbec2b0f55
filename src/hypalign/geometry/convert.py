"""Isometries between the Poincaré ball and the Lorentz model of the same curvature ``-c``.

With space components (MERU convention) and ``x_t = sqrt(1/c + ||x||^2)``:

* Lorentz -> Poincaré: ``p = x / (1 + sqrt(c) x_t)``;
* Poincaré -> Lorentz: ``x = 2p / (1 - c||p||^2)``.

Both preserve distances: ``PoincareBall(c).dist(p, q) == Lorentz(c).dist(x, y)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hypalign.geometry.base import as_float
from hypalign.geometry.lorentz import time_component


def lorentz_to_poincare(x: Tensor, c: Tensor | float) -> Tensor:
    """Space components on the hyperboloid -> point in the Poincaré ball of radius ``1/sqrt(c)``."""
    x = as_float(x)
    return x / (1.0 + c**0.5 * time_component(x, c)).unsqueeze(-1)


def poincare_to_lorentz(p: Tensor, c: Tensor | float) -> Tensor:
    """Point in the Poincaré ball -> space components on the hyperboloid."""
    p = as_float(p)
    return 2.0 * p / (1.0 - c * (p * p).sum(-1, keepdim=True)).clamp_min(1e-15)


def lorentz_full(x: Tensor, c: Tensor | float) -> Tensor:
    """Space components -> full hyperboloid coordinates ``(x_t, x)`` (``D + 1`` columns)."""
    x = as_float(x)
    return torch.cat([time_component(x, c).unsqueeze(-1), x], dim=-1)
