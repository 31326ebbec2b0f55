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

import torch
import torch.nn.functional as F
from torch import Tensor

from hypalign.geometry import Manifold, Sphere


def _similarity(x: Tensor, y: Tensor, geometry: Manifold) -> Tensor:
    if isinstance(geometry, Sphere):
        return x @ y.T
    return -geometry.cdist(x, y)


def pairwise_ce_loss(
    z: Tensor, geometry: Manifold, tau: float = 0.2, stats: bool = True
) -> tuple[Tensor, dict[str, Tensor]]:
    """Hyp-ViT's loss for ``z`` of shape ``(N classes, m samples, D)``; returns ``(loss, stats)``.

    All ``m(m-1)`` slot pairs are evaluated at once from one ``(Nm, Nm)`` similarity matrix
    (equal to the per-pair loop of the reference code, which :func:`pairwise_ce_loss_reference`
    spells out and a test compares). With ``stats``, ``stats["acc"]``: fraction of anchors whose most
    similar cross-slot item is their positive, averaged over pairs (the reference code's logged "acc").
    """
    if z.ndim != 3 or z.shape[1] < 2 or z.shape[0] < 2:
        raise ValueError(f"expected embeddings shaped (classes >= 2, samples >= 2, dim), got {tuple(z.shape)}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
        n, m, d = z.shape
        flat = z.reshape(n * m, d)
        rows = torch.arange(n * m, device=z.device)
        # (N m, N m) logits, rows/cols class-major (class, slot); self-pairs removed up front (subtracting
        # them later would cancel catastrophically when the other terms are tiny)
        sim = (_similarity(flat, flat, geometry) / tau).masked_fill(torch.eye(n * m, dtype=torch.bool,
                                                                               device=z.device), float("-inf"))
        # exp of row-shifted logits once; every softmax denominator below is a sum over a slice of it
        shift = sim.max(dim=1, keepdim=True).values.detach()
        e = torch.exp(sim - shift)  # (Nm, Nm), zero on the diagonal
        slot_sums = e.view(n * m, n, m).sum(dim=1)  # (Nm, m): sum over classes b of e[(a,i), (b,j)]
        anchor_slot = rows % m
        same_slot = slot_sums[rows, anchor_slot]  # (Nm,): same-slot negatives (self already excluded)
        log_den = torch.log(slot_sums + same_slot.unsqueeze(1))  # (Nm, m): softmax denominator per (anchor, j)
        pos_logit = sim.view(n * m, n, m)[rows, rows // m] - shift  # log pos_e
        off = anchor_slot.unsqueeze(1) != torch.arange(m, device=z.device).unsqueeze(0)  # j != i
        # mean over anchors, summed over the ordered pairs j != i (j == i holds the masked self: -inf)
        loss = torch.where(off, log_den - pos_logit, torch.zeros((), dtype=sim.dtype, device=z.device)).sum() / n
        if not stats:
            return loss, {}
        with torch.no_grad():
            cross = e.view(n * m, n, m)  # nearest cross-slot item is the positive?
            hit = (cross.argmax(dim=1) == (rows // m).unsqueeze(1)).float()
            acc = (hit * off).sum() / off.sum()
        return loss, {"acc": acc}


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
