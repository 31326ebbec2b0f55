"""Pairwise cross-entropy of Hyp-ViT (Ermolov et al. 2022, eq. 4; spec §1.3).

A batch holds ``N`` classes × ``m`` samples, arranged as ``z: (N, m, D)``. For every ordered pair of
sample slots ``(i, j)``, ``i != j``, anchors ``z[:, i]`` are matched with positives ``z[:, j]``::

    logits01 = sim(z_i, z_j) / tau                    (N, N): positives on the diagonal
    logits00 = sim(z_i, z_i) / tau - 1e9 * I          (N, N): same-slot negatives, self masked
    l_ij     = CE(cat[logits01, logits00], target = arange(N))

so each anchor's softmax runs over its positive and the ``2N - 2`` other samples of the two slots.
The loss is **summed** over the ``m(m-1)`` ordered pairs (as in the reference code; the paper
averages, which only rescales the learning rate). ``sim`` is ``-d`` in the embedding's geometry
(Poincaré: the closed-form distance, equal to Hyp-ViT's Möbius form) or the cosine ``<x, y>`` for
L2-normalised (spherical) embeddings; τ = 0.2 hyperbolic, 0.1 spherical in the paper.
The loss is computed in float32 even under autocast (artanh near the boundary is unstable in
half precision).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from hypalign.geometry import Manifold, Sphere


def _similarity(x: Tensor, y: Tensor, geometry: Manifold) -> Tensor:
    return geometry.similarity_matrix(x, y, refine=True)


@functools.lru_cache(maxsize=16)
def _layout(n: int, m: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Row index, anchor slot, anchor class and the ``(Nm, m)`` mask ``slot j != anchor's slot`` for the
    class-major layout (cached: the same batch shape recurs every step)."""
    rows = torch.arange(n * m, device=device)
    slot = rows % m
    return rows, slot, rows // m, slot.unsqueeze(1) != torch.arange(m, device=device).unsqueeze(0)


class _FusedPairwiseCE(torch.autograd.Function):
    """:func:`pairwise_ce_loss` with its gradient written out (one autograd node instead of ~60).

    ``kind`` is ``"poincare"`` (``sim = -d_c``) or ``"cosine"`` (``sim = <x, y>``); ``c`` is a float.

    Gradient. With ``e = exp(sim - shift)``, ``S[r, j] = sum_b e[r, (b, j)]`` and, for an anchor ``r``
    in slot ``i``, ``P[r, j] = 1 / (S[r, j] + S[r, i])`` (``j != i``; 0 for ``j = i``)::

        dL/dsim[r, c] = ( e[r, c] (P[r, slot c] + [slot c = i] sum_j P[r, j]) - [c positive of r] ) / N

    Poincaré: ``d = (2/sqrt c) asinh(sqrt q)``, ``q_rc = c ||x_r - x_c||^2 / (a_r a_c)``, ``a = 1 - c||x||^2``,
    ``dd/dq = 1 / (sqrt(c q (1 + q)))`` and, with ``W = dL/dq + (dL/dq)^T`` (q is symmetric),
    ``dL/dx_r = sum_c W_rc (2c / (a_r a_c)) (x_r - x_c) + x_r (2c / a_r) sum_c W_rc q_rc``.
    Cosine: ``dL/dx = (G + G^T) x`` with ``G = dL/dsim``.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, flat: Tensor, n: int, m: int, tau: float,  # type: ignore[override]
                kind: str, c: float) -> Tensor:
        nm = n * m
        gram = flat @ flat.T
        if kind == "poincare":
            sq = gram.diagonal().clone()
            a = (1.0 - c * sq).clamp_min(1e-15)
            q = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * gram) * c / (a.unsqueeze(1) * a.unsqueeze(0))
            q.clamp_min_(0.0)
            root_q = q.sqrt()
            root_1q = (q + 1.0).sqrt_()
            sim = torch.log(root_q + root_1q).mul_(-2.0 / (c**0.5 * tau))
        else:
            sim = gram / tau
        sim.diagonal().fill_(float("-inf"))
        rows, slot, cls, off = _layout(n, m, flat.device)
        shift = sim.max(dim=1, keepdim=True).values
        e = torch.exp(sim - shift)  # zero on the diagonal
        slot_sums = e.view(nm, n, m).sum(dim=1)  # (Nm, m)
        den = slot_sums + slot_sums[rows, slot].unsqueeze(1)
        pos_logit = sim.view(nm, n, m)[rows, cls] - shift  # (Nm, m)
        loss = (den.log() - pos_logit)[off].sum() / n
        ctx.n, ctx.m, ctx.tau, ctx.kind, ctx.c = n, m, tau, kind, c
        saved = [flat, e, den]
        if kind == "poincare":
            saved += [a, q, root_q, root_1q]
        ctx.save_for_backward(*saved)
        return loss

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        flat, e, den, *rest = ctx.saved_tensors
        n, m, tau, c = ctx.n, ctx.m, ctx.tau, ctx.c
        nm = n * m
        rows, slot, cls, off = _layout(n, m, flat.device)
        p = den.reciprocal()  # (Nm, m)
        p[rows, slot] = 0.0
        p[rows, slot] = p.sum(dim=1)  # the anchor's own slot collects every pair's same-slot term
        g = (e.view(nm, n, m) * p.unsqueeze(1)).view(nm, nm)
        g.view(nm, n, m)[rows, cls] -= off.to(g.dtype)  # positives: same class, other slot
        g.mul_(grad_out / n)
        if ctx.kind == "poincare":
            a, q, root_q, root_1q = rest
            # dL/dq = dL/dsim * dsim/dd * dd/dq, with dsim/dd = -1/tau; 0 where q == 0 (the clamped diagonal)
            denom = root_q * root_1q
            dq = torch.where(denom > 0, g * (-1.0 / (tau * c**0.5)) / denom.clamp_min(1e-30), 0.0)
            w = dq + dq.T
            amat = w * (2.0 * c) / (a.unsqueeze(1) * a.unsqueeze(0))
            grad = flat * (amat.sum(dim=1) + (2.0 * c) * (w * q).sum(dim=1) / a).unsqueeze(1) - amat @ flat
        else:
            grad = ((g + g.T) @ flat) / tau
        return grad, None, None, None, None, None


def _fusable(geometry: Manifold) -> str | None:
    """``"poincare"``/``"cosine"`` when the fused loss applies (fixed curvature), else ``None``."""
    from hypalign.geometry import PoincareBall

    if isinstance(geometry, Sphere):
        return "cosine"
    if isinstance(geometry, PoincareBall) and not any(p.requires_grad for p in geometry.parameters()):
        return "poincare"
    return None


def pairwise_ce_loss(
    z: Tensor, geometry: Manifold, tau: float = 0.2, stats: bool = True, fused: bool = True
) -> tuple[Tensor, dict[str, Tensor]]:
    """Hyp-ViT's loss for ``z`` of shape ``(N classes, m samples, D)``; returns ``(loss, stats)``.

    All ``m(m-1)`` slot pairs are evaluated at once from one ``(Nm, Nm)`` similarity matrix
    (equal to the per-pair loop of the reference code, which :func:`pairwise_ce_loss_reference`
    spells out and a test compares). With ``stats``, ``stats["acc"]``: fraction of anchors whose most
    similar cross-slot item is their positive, averaged over pairs (the reference code's logged "acc").
    With ``fused`` (default) the Poincaré (fixed curvature) and spherical cases run as one autograd
    node with the gradient written out (:class:`_FusedPairwiseCE`; equal to autograd's in float64, a
    test checks); other geometries, and a learnable curvature, go through autograd.
    """
    if z.ndim != 3 or z.shape[1] < 2 or z.shape[0] < 2:
        raise ValueError(f"expected embeddings shaped (classes >= 2, samples >= 2, dim), got {tuple(z.shape)}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
        n, m, d = z.shape
        flat = z.reshape(n * m, d)
        kind = _fusable(geometry) if fused else None
        if kind is not None:
            c = float(geometry.c) if kind == "poincare" else 0.0  # type: ignore[attr-defined]
            loss = _FusedPairwiseCE.apply(flat, n, m, float(tau), kind, c)
        else:
            loss = _pairwise_ce_autograd(flat, n, m, geometry, tau)
        if not stats:
            return loss, {}
        with torch.no_grad():
            _, _, cls, off = _layout(n, m, z.device)
            sim = _similarity(flat, flat, geometry).fill_diagonal_(float("-inf"))
            hit = (sim.view(n * m, n, m).argmax(dim=1) == cls.unsqueeze(1)).float()  # nearest cross-slot item
            acc = (hit * off).sum() / off.sum()
        return loss, {"acc": acc}


def _pairwise_ce_autograd(flat: Tensor, n: int, m: int, geometry: Manifold, tau: float) -> Tensor:
    """The loss from differentiable tensor operations (any geometry, learnable curvature)."""
    rows, slot, cls, off = _layout(n, m, flat.device)
    # (N m, N m) logits, rows/cols class-major (class, slot); self-pairs removed up front (subtracting
    # them later would cancel catastrophically when the other terms are tiny)
    sim = (_similarity(flat, flat, geometry) / tau).masked_fill(
        torch.eye(n * m, dtype=torch.bool, device=flat.device), float("-inf"))
    # exp of row-shifted logits once; every softmax denominator below is a sum over a slice of it
    shift = sim.max(dim=1, keepdim=True).values.detach()
    e = torch.exp(sim - shift)  # (Nm, Nm), zero on the diagonal
    slot_sums = e.view(n * m, n, m).sum(dim=1)  # (Nm, m): sum over classes b of e[(a,i), (b,j)]
    log_den = torch.log(slot_sums + slot_sums[rows, slot].unsqueeze(1))  # softmax denominator per (anchor, j)
    pos_logit = sim.view(n * m, n, m)[rows, cls] - shift  # log pos_e
    # mean over anchors, summed over the ordered pairs j != i (j == i holds the masked self: -inf)
    return torch.where(off, log_den - pos_logit, torch.zeros((), dtype=sim.dtype, device=flat.device)).sum() / n


def pairwise_ce_loss_reference(z: Tensor, geometry: Manifold, tau: float = 0.2) -> Tensor:
    """The reference code's loop over slot pairs (spec §1.3), kept as the test oracle."""
    n, m, _ = z.shape
    target = torch.arange(n, device=z.device)
    eye = torch.eye(n, device=z.device, dtype=torch.bool)
    total = z.new_zeros(())
    for i in range(m):
        logits00 = (_similarity(z[:, i], z[:, i], geometry) / tau).masked_fill(eye, -1e9)
        for j in range(m):
            if i != j:
                logits = torch.cat([_similarity(z[:, i], z[:, j], geometry) / tau, logits00], dim=1)
                total = total + F.cross_entropy(logits - logits.max(1, keepdim=True).values.detach(), target)
    return total
