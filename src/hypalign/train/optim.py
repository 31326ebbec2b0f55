"""Optimizers: AdamW with parameter groups, and Riemannian SGD for points on a manifold.

* :func:`param_groups` puts weight decay on weight matrices only: biases, norm layers' parameters,
  1-d tensors and learnable curvature/temperature scalars get none (the usual ViT/CLIP recipe).
* :class:`RiemannianSGD` (Bonnabel 2013; Nickel & Kiela 2017 eq. 5; Nickel & Kiela 2018 §3):
  parameters tagged with a manifold move along the Riemannian gradient,

  - Poincaré ball (curvature ``-c``): ``x <- proj(x - lr * (1 - c|x|^2)^2 / 4 * grad_E)``
    (the inverse metric ``(2/(1 - c|x|^2))^-2`` rescales the Euclidean gradient; retraction
    ``x + v`` then projection inside the ball, as in the paper);
  - Lorentz (stored as space components ``x_s``, ``x_0 = sqrt(1/c + |x_s|^2)``): the gradient
    w.r.t. the space components is pushed to the ambient gradient ``h = (0, g)``, turned into
    the Riemannian gradient ``grad = proj_x(g_L^-1 h)`` and followed by the exact exponential map
    ``exp_x(-lr * grad)`` of the hyperboloid (Nickel & Kiela 2018, eq. 8);
  - Euclidean / untagged: plain SGD.

  Parameters are tagged with ``manifold="poincare"|"lorentz"`` and ``c`` in their param group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

NO_DECAY_NAMES = ("bias", "norm", "ln_", "bn", "log_c", "logit_scale", "temperature", "pos_embed", "cls_token")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: matrices (``weight_decay``) and everything else (0)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        if p.ndim < 2 or any(k in lname for k in NO_DECAY_NAMES):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class RiemannianSGD(torch.optim.Optimizer):
    """Riemannian SGD (see module docstring); ``boundary_eps`` keeps Poincaré points inside the ball."""

    def __init__(self, params: Iterable[Any], lr: float = 0.1, boundary_eps: float = 1e-5) -> None:
        super().__init__(params, {"lr": lr, "manifold": "euclidean", "c": 1.0, "boundary_eps": boundary_eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: D102
        for group in self.param_groups:
            lr, kind, c = group["lr"], group["manifold"], float(group["c"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if kind == "poincare":
                    sq = (p * p).sum(-1, keepdim=True)
                    p.add_(g * ((1 - c * sq) ** 2 / 4), alpha=-lr)
                    max_norm = (1 - group["boundary_eps"]) / c**0.5
                    norm = p.norm(dim=-1, keepdim=True).clamp_min(1e-15)
                    p.mul_(torch.where(norm > max_norm, max_norm / norm, torch.ones_like(norm)))
                elif kind == "lorentz":
                    p.copy_(_lorentz_rsgd_step(p, g, lr, c))
                else:
                    p.add_(g, alpha=-lr)


def _lorentz_rsgd_step(xs: torch.Tensor, g: torch.Tensor, lr: float, c: float) -> torch.Tensor:
    """One exact RSGD step on the hyperboloid ``<x,x>_L = -1/c`` for space components ``xs``."""
    x0 = torch.sqrt(1 / c + (xs * xs).sum(-1, keepdim=True))
    x = torch.cat([x0, xs], -1)
    # ambient Euclidean gradient of E(x_s(x)): the chart ignores x_0, so h = (0, g);
    # g_L^{-1} h flips the time sign (still 0); project onto T_x: v = h + c <x, h>_L x.
    h = torch.cat([torch.zeros_like(x0), g], -1)
    inner_xh = -x[..., :1] * h[..., :1] + (x[..., 1:] * h[..., 1:]).sum(-1, keepdim=True)
    v = -lr * (h + c * inner_xh * x)
    vn_sq = (-v[..., :1] ** 2 + (v[..., 1:] ** 2).sum(-1, keepdim=True)).clamp_min(0)
    vn = torch.sqrt(vn_sq * c).clamp_min(1e-15)
    vn_c = vn.clamp_max(50.0)  # cosh/sinh overflow guard; steps this long never happen with sane lr
    new = torch.cosh(vn_c) * x + torch.sinh(vn_c) / vn * v
    return new[..., 1:]
