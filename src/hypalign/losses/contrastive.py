"""Cross-modal objectives in an embedding's own geometry: CLIP's symmetric InfoNCE, MERU's entailment
cone loss, and a multi-label term-matching loss for GO prediction.

* :func:`clip_loss` (Radford et al. 2021; MERU, Desai et al. 2023 §3; ProtCLIP's L_GC): with
  ``s_ij = sim(a_i, b_j)`` (:meth:`~hypalign.geometry.base.Manifold.similarity_matrix`: cosine for the sphere,
  ``-d(a_i, b_j)`` on a hyperbolic manifold) and
  scale ``t = exp(logit_scale)`` (clamped to ``max_scale``, 100 as in CLIP)::

      L = ( CE(t s, arange) + CE(t s^T, arange) ) / 2

  Under DDP, ``b`` and ``a`` are gathered from every process *with gradient* (OpenCLIP's
  ``gather_with_grad=True``, ``local_loss=False``), so each process sees the global batch.
* :func:`entailment_loss` (MERU eq. 9, Lorentz model or Poincaré ball): ``max(0, oxy_angle(g, s) - aperture(g))``
  pushes the specific point ``s`` (an image, a protein) into the entailment cone of the general
  point ``g`` (a caption, a GO term); mean over pairs.
* :func:`term_matching_loss`: binary cross-entropy of ``sigmoid(t * score(p, term) + bias)`` against
  the protein's (propagated) annotations over a set of candidate terms — the GO-prediction view
  of the same space; its logits are the calibrated scores used for Fmax. ``score`` is the
  similarity, or in hyperbolic space the entailment-cone margin (:mod:`hypalign.geometry.cones`).
* :func:`segment_alignment_loss` (ProtCLIP's L_PDA): residue-level alignment of each protein's
  property segments with its property texts, in the (Euclidean) projection space before the lift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hypalign import distributed as dist_utils
from hypalign.geometry import Manifold
from hypalign.geometry.cones import MIN_RADIUS, cone_margin_matrix, cone_violation

#: CLIP clamps the learnable temperature's exponent at log(100).
MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(a: Tensor, b: Tensor, geometry: Manifold, logit_scale: Tensor, gather: bool = True,
              max_scale: float = MAX_LOGIT_SCALE) -> Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b`` (see module docstring)."""
    if a.shape != b.shape:
        raise ValueError(f"clip_loss: paired embeddings must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if gather and dist_utils.is_distributed():
        a, b = dist_utils.all_gather_with_grad(a), dist_utils.all_gather_with_grad(b)
    scale = logit_scale.clamp(max=max_scale).exp()
    logits = scale * geometry.similarity_matrix(a.float(), b.float())
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def entailment_loss(general: Tensor, specific: Tensor, geometry: Manifold, min_radius: float = MIN_RADIUS) -> Tensor:
    """MERU's cone loss (eq. 9) ``mean(max(0, ext(g, s) - aper(g)))`` for paired rows, in the Lorentz model or the
    Poincaré ball (:mod:`hypalign.geometry.cones`; other geometries raise ``ValueError``)."""
    return cone_violation(general, specific, geometry, min_radius).mean()


#: How a protein is scored against a term: ``similarity`` (cosine / ``-d``) or ``entailment`` (cone margin).
TERM_SCORES = ("similarity", "entailment")


def term_matching_logits(p: Tensor, terms: Tensor, geometry: Manifold, logit_scale: Tensor, bias: Tensor,
                         score: str = "similarity") -> Tensor:
    """``(proteins, terms)`` logits ``exp(logit_scale) * score(p, term) + bias`` (``bias``: per term or scalar).

    ``score="similarity"``: cosine on the sphere, ``-d`` on a hyperbolic manifold. ``score="entailment"``:
    the cone margin (:func:`~hypalign.geometry.cones.cone_margin_matrix`) — the term entails the protein (MERU's
    cones). The distance shifts every term's logit of a protein far from the origin by about ``-||p||``, which a
    per-term bias cannot undo and which breaks a threshold shared by all proteins (Fmax); the cone margin is an
    angle, bounded."""
    scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    if score == "entailment":
        return scale * cone_margin_matrix(terms, p, geometry) + bias
    if score != "similarity":
        raise ValueError(f"term score {score!r}: expected one of {TERM_SCORES}")
    return scale * geometry.similarity_matrix(p.float(), terms.float()) + bias


def term_matching_loss(p: Tensor, terms: Tensor, labels: Tensor, geometry: Manifold, logit_scale: Tensor,
                       bias: Tensor, score: str = "similarity") -> Tensor:
    """Mean binary cross-entropy of :func:`term_matching_logits` against 0/1 ``labels``."""
    logits = term_matching_logits(p, terms, geometry, logit_scale, bias, score)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def dynamic_segments(u: Tensor, residues: Tensor, mask: Tensor, theta: float = 0.3) -> Tensor:
    """ProtCLIP's property-grouped dynamic segments (spec §3.3, L_PDA): ``(B, K, E)`` embeddings
    ``g_bk = sum_l w_bkl P_bl`` with ``S_bkl = u_bk . P_bl`` min-max normalised over the residues ``l`` of
    protein ``b`` (``mask``), values below ``theta`` set to 0, and ``w = S / sum_l S``."""
    s = torch.einsum("bke,ble->bkl", u.float(), residues.float())
    m = mask[:, None, :]
    big = torch.finfo(s.dtype).max
    lo = s.masked_fill(~m, big).amin(-1, keepdim=True)
    hi = s.masked_fill(~m, -big).amax(-1, keepdim=True)
    sn = (s - lo) / (hi - lo).clamp_min(1e-8)
    sn = torch.where((sn >= theta) & m, sn, torch.zeros_like(sn))
    w = sn / sn.sum(-1, keepdim=True).clamp_min(1e-8)
    return w @ residues.float()


def segment_alignment_loss(u: Tensor, residues: Tensor, mask: Tensor, logit_scale: Tensor,
                           theta: float = 0.3) -> Tensor:
    """L_PDA: per protein, cross-entropy over the ``K x K`` matrix ``exp(logit_scale) cos(g_bk, u_bj)`` with the
    identity as labels (segment ``k`` belongs to property ``k``; :func:`dynamic_segments`), mean over proteins.
    The reference code computes one direction twice (spec §3.5 quirk 2); here it is the mean of both."""
    b, k, _ = u.shape
    g = F.normalize(dynamic_segments(u, residues, mask, theta), dim=-1)
    logits = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * (g @ F.normalize(u.float(), dim=-1).transpose(1, 2))
    target = torch.arange(k, device=u.device).repeat(b)
    return 0.5 * (F.cross_entropy(logits.reshape(b * k, k), target)
                  + F.cross_entropy(logits.transpose(1, 2).reshape(b * k, k), target))
