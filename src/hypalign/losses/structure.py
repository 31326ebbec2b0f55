"""Losses of backbone reconstruction and of lookup-free quantisation (the structure tokenizer, spec §5.1).

Coordinates are ``(B, L, A, 3)`` (residues × atoms N, CA, C, O) with a residue ``mask`` ``(B, L)``; every function
handles padded batches and works in float32 or float64.

* :func:`kabsch_superpose` — the rotation and translation that best superpose ``pred`` onto ``target`` (least squares
  over the masked atoms; Kabsch 1976, with the determinant sign fix so it is a proper rotation), differentiable;
* :func:`aligned_sq_error` — the per-chain mean squared atom error after that superposition (the square of the RMSD);
* :func:`fape` — AlphaFold 2's frame-aligned point error (90 % clamped at 10 Å, 10 % unclamped, in units of 10 Å);
* :func:`step_error` — the error of the predicted steps between consecutive residues' frames (the local geometry,
  alignment-free, in Å);
* :func:`distance_loss` — the mean absolute error of the CA–CA distances below ``cutoff`` Å (alignment-free);
* :func:`lfq_entropy` / :func:`commitment` — MAGVIT-v2's lookup-free quantisation terms (Yu et al. 2024) with the
  code distribution factorised over the bits (module notes in :mod:`hypalign.models.structok`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def kabsch_superpose(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``pred`` ``(B, L, A, 3)`` moved onto ``target`` by the proper rotation + translation minimising the squared
    distance over the atoms of residues where ``mask`` ``(B, L)`` is true. Gradients flow through the rotation (SVD of
    the 3x3 covariance; computed in float64 for stability)."""
    b = pred.shape[0]
    w = mask.to(torch.float64)[:, :, None].expand(-1, -1, pred.shape[2]).reshape(b, -1, 1)
    p = pred.reshape(b, -1, 3).to(torch.float64)
    t = target.reshape(b, -1, 3).to(torch.float64)
    n = w.sum(1, keepdim=True).clamp_min(1.0)
    pc = (p * w).sum(1, keepdim=True) / n
    tc = (t * w).sum(1, keepdim=True) / n
    cov = ((p - pc) * w).transpose(1, 2) @ (t - tc)  # (B, 3, 3)
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    fix = torch.ones(b, 3, dtype=cov.dtype, device=cov.device)
    fix[:, 2] = torch.where(d == 0, torch.ones_like(d), d)
    rot = u @ torch.diag_embed(fix) @ vh  # p @ rot best matches t
    out = (p - pc) @ rot + tc
    return out.reshape(pred.shape).to(pred.dtype)


def aligned_sq_error(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per chain ``(B,)``: mean over the masked atoms of ``|superposed pred − target|²`` (its square root is the
    RMSD after superposition)."""
    aligned = kabsch_superpose(pred, target, mask)
    sq = (aligned - target).square().sum(-1).mean(-1)  # (B, L): mean over atoms
    m = mask.to(sq.dtype)
    return (sq * m).sum(1) / m.sum(1).clamp_min(1.0)


def fape(pred: Tensor, target: Tensor, mask: Tensor, clamp: float = 10.0, scale: float = 10.0,
         unclamped_fraction: float = 0.1) -> Tensor:
    """Frame-aligned point error (AlphaFold 2): every residue's frame (origin CA, axes from C − CA and N − CA:
    :func:`hypalign.models.structok.backbone_frames`) expresses every atom of the chain, predicted and true alike;
    ``mean_{i,j,a} min(|T̂_i⁻¹ x̂_ja − T_i⁻¹ x_ja|, clamp) / scale`` over masked ``i``, ``j`` (``(B, L, 4, 3)`` atoms),
    mixed with ``unclamped_fraction`` of the same without the clamp (AlphaFold trains 10 % of its batches unclamped:
    clamped alone, a structure that starts collapsed gets no gradient from the pairs more than 10 Å apart, and a
    structure module fitting even one chain stalls at ~15 Å). Invariant to any rigid motion of either structure, and
    sensitive to chirality (a mirror image is wrong)."""
    from hypalign.models.structok import backbone_frames

    def local(x: Tensor) -> Tensor:
        rot, ca = backbone_frames(x), x[:, :, 1]
        rel = x.unsqueeze(1) - ca[:, :, None, None, :]  # (B, L_i, L_j, A, 3): atoms j relative to CA_i
        return torch.einsum("bixy,bijax->bijay", rot, rel)  # R_iᵀ (x_ja − CA_i)

    err = (local(pred.float()) - local(target.float())).square().sum(-1).add(1e-8).sqrt() / scale
    m = (mask[:, :, None] & mask[:, None, :]).to(err.dtype)[..., None]
    n = (m.sum() * err.shape[-1]).clamp_min(1.0)
    clamped = (err.clamp(max=clamp / scale) * m).sum() / n
    return clamped if not unclamped_fraction else (
        (1 - unclamped_fraction) * clamped + unclamped_fraction * (err * m).sum() / n)


def step_error(steps: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over consecutive residue pairs ``(i − 1, i)`` of both ``mask`` and over the atoms N, CA, C of the
    distance (Å) between residue ``i``'s atoms placed in frame ``i − 1`` by the predicted step and where they truly
    are in it: ``|R̂ a + t̂ − R_{i−1}ᵀ (x_ia − CA_{i−1})|`` with ``a`` the atom's ideal place in its own frame and
    ``(R̂, t̂)`` = ``steps`` ``(B, L, 12)`` (rotation row-major, translation in Å; :meth:`hypalign.models.structok.
    StructureTokenizer.decode_parts`). ``target`` ``(B, L, 4, 3)``. Free of any superposition: it is what a chain
    built step by step gets wrong locally."""
    from hypalign.models.structok import IDEAL_C, IDEAL_N, backbone_frames

    x = target.float()
    rot = backbone_frames(x)
    true = (rot[:, :-1].transpose(-1, -2).unsqueeze(2) @ (x[:, 1:, :3] - x[:, :-1, 1:2]).unsqueeze(-1)).squeeze(-1)
    ideal = torch.tensor([IDEAL_N, (0.0, 0.0, 0.0), IDEAL_C], dtype=x.dtype, device=x.device)
    r_hat, t_hat = steps[:, 1:, :9].float().unflatten(-1, (3, 3)), steps[:, 1:, 9:].float()
    pred = torch.einsum("blxy,ay->blax", r_hat, ideal) + t_hat.unsqueeze(2)  # (B, L-1, 3, 3)
    err = (pred - true).square().sum(-1).add(1e-8).sqrt().mean(-1)
    m = (mask[:, 1:] & mask[:, :-1]).to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def distance_loss(pred_ca: Tensor, target_ca: Tensor, mask: Tensor, cutoff: float = 15.0) -> Tensor:
    """Mean ``|d_pred − d_true|`` over residue pairs ``i != j`` with ``d_true < cutoff`` (``(B, L, 3)`` CA
    coordinates): the local geometry, free of any superposition."""
    dp = torch.cdist(pred_ca.float(), pred_ca.float())
    dt = torch.cdist(target_ca.float(), target_ca.float())
    m = mask[:, :, None] & mask[:, None, :] & (dt < cutoff)
    m &= ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)[None]
    err = (dp - dt).abs()
    return (err * m).sum() / m.sum().clamp_min(1)


def lfq_entropy(z: Tensor, mask: Tensor, tau: float = 1.0, exact_bits: int = 14) -> Tensor:
    """``mean_i H(p(code | z_i)) − H(mean_i p(code | z_i))`` (MAGVIT-v2's entropy term; Yu et al. 2024) for
    lookup-free quantisation, where the softmax over the codes ``c ∈ {−1, +1}^K`` of ``−|z − c|² / tau`` factorises
    over the bits: ``p(bit_k = +1 | z) = sigmoid(4 z_k / tau)``. The per-residue entropy is the sum of the bits'
    entropies; the codebook entropy is computed exactly over all ``2^K`` codes (``log p(c | z_i) = Σ_k log p(bit_k =
    c_k | z_i)``, an ``N × 2^K`` matrix) when ``K ≤ exact_bits``, else bounded above by the sum of the bits' marginal
    entropies (which misses correlated bits: codes that all flip together). Minimising it makes each residue's code
    confident and the codebook used evenly. ``z`` ``(B, L, K)``, residues ``mask`` ``(B, L)``."""
    p = torch.sigmoid(4.0 * z.float() / tau)[mask]  # (N, K)

    def h(q: Tensor) -> Tensor:
        q = q.clamp(1e-6, 1 - 1e-6)
        return -(q * q.log() + (1 - q) * (1 - q).log())

    per_residue = h(p).sum(-1).mean()
    k = p.shape[-1]
    if k > exact_bits:
        return per_residue - h(p.mean(0)).sum()
    bits = ((torch.arange(2**k, device=z.device)[:, None] >> torch.arange(k, device=z.device)) & 1).float()
    logp = p.clamp_min(1e-6).log() @ bits.T + (1 - p).clamp_min(1e-6).log() @ (1 - bits).T  # (N, 2^K)
    avg = logp.exp().mean(0)
    return per_residue + (avg * avg.clamp_min(1e-12).log()).sum()


def commitment(z: Tensor, mask: Tensor) -> Tensor:
    """``mean (z − sign(z))²`` over the masked residues' code elements (the codes held fixed; VQ-VAE's commitment
    is an element mean too): pulls the continuous code onto its quantised corner."""
    zf = z.float()[mask]
    return (zf - torch.where(zf >= 0, 1.0, -1.0).detach()).square().mean()
