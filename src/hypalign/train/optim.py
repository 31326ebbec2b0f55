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
* :class:`RiemannianAdam` (Bécigneul & Ganea 2019, "Riemannian adaptive optimization methods") for
  tables whose rows are points of one manifold each: Adam on the Riemannian gradient with one second
  moment per row (the squared Riemannian norm: the adaptivity of a product of manifolds), steps taken
  with the exact exponential map, so every update moves a point by about ``lr`` in geodesic distance
  wherever it lies — near the origin or at radius 20 (where fixed coordinate steps either vanish or
  leave the ball).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from hypalign.geometry.poincare import POINCARE_MAX_RADIUS

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


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """Rescale gradients in place so their joint L2 norm is at most ``max_norm``; returns the norm before.

    Same rule as ``torch.nn.utils.clip_grad_norm_`` (``g <- g * max_norm / (norm + 1e-6)`` when
    ``norm > max_norm``) in three tensor operations for the dense gradients instead of two per
    parameter, and gradients are left untouched when already within bounds (most steps) — about 3x
    cheaper for a small model on CPU. Sparse gradients (which torch's function rejects) count with
    their coalesced values. A non-finite norm is returned as is, without rescaling (the caller
    decides: the trainer stops unless a loss scaler will skip the step).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    with torch.no_grad():
        dense = [g for g in grads if not g.is_sparse]
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for g in dense:
            groups.setdefault((g.device, g.dtype), []).append(g)
        sq = sum(float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs)))) ** 2 for gs in groups.values())
        sq += sum(float(torch.linalg.vector_norm(g.coalesce().values())) ** 2 for g in grads if g.is_sparse)
        total = math.sqrt(sq)
        if total > max_norm:  # False for NaN too
            coef = max_norm / (total + 1e-6)
            for gs in groups.values():
                torch._foreach_mul_(gs, coef)
            for g in grads:
                if g.is_sparse:
                    g.mul_(coef)
    return total


def _sparse_rows(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices and values of a sparse row gradient, each row once. Coalescing (a sort) is skipped
    when the rows are already strictly increasing — the hierarchy kernel's gradients are, but
    autograd drops their "coalesced" flag on the way to ``.grad``."""
    if not g.is_coalesced():
        rows = g._indices()[0]
        if rows.numel() < 2 or bool((rows[1:] > rows[:-1]).all()):
            return rows, g._values()
        g = g.coalesce()
    return g.indices()[0], g.values()


class LazyAdam(torch.optim.Optimizer):
    """Adam for embedding tables with sparse (row) gradients: only the rows present in a step's
    gradient update their moments and values ("lazy" Adam, the semantics of ``torch.optim.SparseAdam``,
    which is several times slower here because it rebuilds dense masks). Dense gradients get plain Adam.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``x -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`` with ``t`` the optimizer step.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float64)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                t = float(st["step"])
                c1, c2 = 1 - b1**t, 1 - b2**t
                g = p.grad
                if g.is_sparse:
                    from hypalign.train._optim_kernels import lazy_adam_rows

                    if p.dtype != torch.float32 or p.device.type != "cpu":
                        raise ValueError("LazyAdam with sparse gradients needs float32 CPU parameters")
                    rows, vals = _sparse_rows(g)
                    lazy_adam_rows(p.data.numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy(),
                                   rows.numpy(), vals.float().contiguous().numpy(), lr, b1, b2, eps, c1, c2)
                else:
                    st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                    st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    p.sub_(lr * (st["exp_avg"] / c1) / ((st["exp_avg_sq"] / c2).sqrt() + eps))


class RiemannianSGD(torch.optim.Optimizer):
    """Riemannian SGD (see module docstring); ``boundary_eps`` keeps Poincaré points inside the ball."""

    def __init__(self, params: Iterable[Any], lr: float = 0.1, boundary_eps: float = 1e-5) -> None:
        super().__init__(params, {"lr": lr, "manifold": "euclidean", "c": 1.0, "boundary_eps": boundary_eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            lr, kind, c = group["lr"], group["manifold"], float(group["c"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:  # update only the rows the gradient touches
                    rows, vals = _sparse_rows(p.grad)
                    sub = p[rows].clone()
                    _rsgd_dense(sub, vals, lr, kind, c, group["boundary_eps"])
                    p[rows] = sub
                else:
                    _rsgd_dense(p, p.grad, lr, kind, c, group["boundary_eps"])


def _rsgd_dense(p: torch.Tensor, g: torch.Tensor, lr: float, kind: str, c: float, boundary_eps: float) -> None:
    if kind == "poincare":
        sq = (p * p).sum(-1, keepdim=True)
        p.add_(g * ((1 - c * sq) ** 2 / 4), alpha=-lr)
        max_norm = (1 - boundary_eps) / c**0.5
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
    # a geodesic step longer than 20 (in units of 1/sqrt(c)) would overflow float32 coordinates
    # (cosh(20) ~ 2e8, squared 6e16): such steps are cut to that length along the same direction
    vn_c = vn.clamp_max(20.0)
    new = torch.cosh(vn_c) * x + torch.sinh(vn_c) / vn * v
    return new[..., 1:]


RIEMANNIAN_ADAM_KINDS = {"lorentz": 0, "poincare": 1, "euclidean": 2}


class RiemannianAdam(torch.optim.Optimizer):
    """Riemannian Adam for embedding tables, one manifold point per row (Bécigneul & Ganea 2019, Alg. 1,
    with the product-manifold adaptivity: one second moment per row). CPU tables, dense or sparse (row)
    gradients; rows absent from a sparse gradient keep their state (lazy, like :class:`LazyAdam`).

    For the row ``x`` with Euclidean gradient ``g`` (w.r.t. its stored coordinates), ``t`` the optimizer step:

    * Riemannian gradient ``h`` and its squared norm ``|h|_x^2``: Poincaré ball (curvature ``-c``, conformal
      factor ``lam = 2 / (1 - c|x|^2)``): ``h = g / lam^2``, ``|h|_x^2 = |g|^2 / lam^2``; Lorentz space
      components (``x_0 = sqrt(1/c + |x|^2)``, chart metric ``I - x x^T / x_0^2``): ``h = g + c x (x.g)``,
      ``|h|_x^2 = |g|^2 + c (x.g)^2``; Euclidean: ``h = g``;
    * ``m <- b1 m + (1 - b1) h``, ``v <- b2 v + (1 - b2) |h|_x^2`` (a scalar per row);
    * ``x <- exp_x(-lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps))``: Möbius-addition form in the
      ball (then kept within geodesic radius ``POINCARE_MAX_RADIUS[dtype] / sqrt(c)`` of the origin), ``cosh``/``sinh``
      on the hyperboloid, ``x + u`` in Euclidean space;
    * ``m`` is carried to the new point by the conformal factor ratio ``lam(x) / lam(x_new)`` in the ball
      (the transport's length-preserving part; the gyration is left out) and kept as is otherwise.

    Parameters are tagged like :class:`RiemannianSGD` (``manifold`` and ``c`` in the param group).
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.1, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-12) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "manifold": "euclidean", "c": 1.0})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        from hypalign.train._optim_kernels import riemannian_adam_rows

        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            kind, c = group["manifold"], float(group["c"])
            if kind not in RIEMANNIAN_ADAM_KINDS:
                raise ValueError(f"RiemannianAdam: unknown manifold {kind!r}; expected one of "
                                 f"{', '.join(RIEMANNIAN_ADAM_KINDS)}")
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.device.type != "cpu" or p.dtype not in POINCARE_MAX_RADIUS or p.dim() != 2:
                    raise ValueError("RiemannianAdam needs a 2-d float32 or float64 CPU table (one point per row)")
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float64)
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros(p.shape[0], dtype=torch.float64)
                st["step"] += 1
                t = float(st["step"])
                if p.grad.is_sparse:
                    rows, vals = _sparse_rows(p.grad)
                else:
                    rows, vals = torch.arange(p.shape[0]), p.grad
                max_norm = math.tanh(POINCARE_MAX_RADIUS[p.dtype] / 2) / c**0.5
                riemannian_adam_rows(p.data.numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy(),
                                     rows.numpy(), vals.to(p.dtype).contiguous().numpy(), lr, b1, b2, eps,
                                     1 - b1**t, 1 - b2**t, RIEMANNIAN_ADAM_KINDS[kind], c, max_norm)
