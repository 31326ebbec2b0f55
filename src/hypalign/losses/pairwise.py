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


def pairwise_ce_loss(z: Tensor, geometry: Manifold, tau: float = 0.2) -> tuple[Tensor, dict[str, Tensor]]:
    """Hyp-ViT's loss for ``z`` of shape ``(N classes, m samples, D)``; returns ``(loss, stats)``.

    All ``m(m-1)`` slot pairs are evaluated at once from one ``(Nm, Nm)`` similarity matrix
    (equal to the per-pair loop of the reference code, which :func:`pairwise_ce_loss_reference`
    spells out and a test compares). ``stats["acc"]``: fraction of anchors whose most similar
    cross-slot item is their positive, averaged over pairs (the reference code's logged "acc").
    """
    if z.ndim != 3 or z.shape[1] < 2 or z.shape[0] < 2:
        raise ValueError(f"expected embeddings shaped (classes >= 2, samples >= 2, dim), got {tuple(z.shape)}")
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
        n, m, d = z.shape
        flat = z.reshape(n * m, d)
        sim = _similarity(flat, flat, geometry) / tau  # (N m, N m), class-major
        s4 = sim.view(n, m, n, m).permute(1, 3, 0, 2)  # [slot_i, slot_j, class_a, class_b]
        eye = torch.eye(n, device=z.device, dtype=torch.bool)
        idx = torch.arange(m, device=z.device)
        same = s4[idx, idx].masked_fill(eye, float("-inf"))  # (m, N, N): logits00 per slot
        lse = torch.logaddexp(torch.logsumexp(s4, dim=-1), torch.logsumexp(same, dim=-1).unsqueeze(1))  # (m,m,N)
        pos = torch.diagonal(s4, dim1=-2, dim2=-1)  # (m, m, N)
        per_pair = (lse - pos).mean(-1)  # CE averaged over anchors, for each (i, j)
        off = ~torch.eye(m, device=z.device, dtype=torch.bool)
        loss = per_pair[off].sum()
        with torch.no_grad():
            hit = (s4.argmax(-1) == torch.arange(n, device=z.device)).float().mean(-1)
            acc = hit[off].mean()
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
