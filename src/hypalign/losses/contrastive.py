"""Cross-modal objectives in an embedding's own geometry: CLIP's symmetric InfoNCE, MERU's entailment
cone loss, and a multi-label term-matching loss for GO prediction.

* :func:`clip_loss` (Radford et al. 2021; MERU, Desai et al. 2023 §3; ProtCLIP's L_GC): with
  ``s_ij = sim(a_i, b_j)`` — cosine for the sphere, ``-d(a_i, b_j)`` on a hyperbolic manifold — and
  scale ``t = exp(logit_scale)`` (clamped to ``max_scale``, 100 as in CLIP)::

      L = ( CE(t s, arange) + CE(t s^T, arange) ) / 2

  Under DDP, ``b`` and ``a`` are gathered from every process *with gradient* (OpenCLIP's
  ``gather_with_grad=True``, ``local_loss=False``), so each process sees the global batch.
* :func:`entailment_loss` (MERU eq. 9, Lorentz model): ``max(0, oxy_angle(g, s) - aperture(g))``
  pushes the specific point ``s`` (an image, a protein) into the entailment cone of the general
  point ``g`` (a caption, a GO term); mean over pairs.
* :func:`term_matching_loss`: binary cross-entropy of ``sigmoid(t * sim(p, term) + bias)`` against
  the protein's (propagated) annotations over a set of candidate terms — the GO-prediction view
  of the same space; its logits are the calibrated scores used for Fmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hypalign.geometry import Lorentz, Manifold, Sphere
from hypalign.train import distributed as dist_utils

#: CLIP clamps the learnable temperature's exponent at log(100).
MAX_LOGIT_SCALE = math.log(100.0)


def similarity(a: Tensor, b: Tensor, geometry: Manifold) -> Tensor:
    """``(N, M)`` similarities: ``a @ b.T`` on the sphere (cosine of unit vectors), ``-d`` otherwise.

    Distances come from the one-matrix-product form without the refinement pass for near-coincident
    pairs (``refine=False``): logits tolerate its rounding, and early in training, when everything
    sits close together, refinement would recompute most of a large (proteins x GO terms) matrix."""
    if isinstance(geometry, Sphere):
        return a @ b.T
    return -geometry.cdist(a, b, refine=False)


def clip_loss(a: Tensor, b: Tensor, geometry: Manifold, logit_scale: Tensor, gather: bool = True,
              max_scale: float = MAX_LOGIT_SCALE) -> Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` and ``b`` (see module docstring)."""
    if a.shape != b.shape:
        raise ValueError(f"clip_loss: paired embeddings must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if gather and dist_utils.is_distributed():
        a, b = dist_utils.all_gather_with_grad(a), dist_utils.all_gather_with_grad(b)
    scale = logit_scale.clamp(max=max_scale).exp()
    logits = scale * similarity(a.float(), b.float(), geometry)
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def entailment_loss(general: Tensor, specific: Tensor, geometry: Lorentz, min_radius: float = 0.1) -> Tensor:
    """MERU's cone loss ``mean(max(0, oxy_angle(g, s) - half_aperture(g)))`` for paired rows."""
    if not isinstance(geometry, Lorentz):
        raise ValueError("entailment cones are defined here for the Lorentz model; use geometry='lorentz'")
    angle = geometry.oxy_angle(general, specific)
    aperture = geometry.half_aperture(general, min_radius=min_radius)
    return torch.relu(angle - aperture).mean()


def term_matching_logits(p: Tensor, terms: Tensor, geometry: Manifold, logit_scale: Tensor, bias: Tensor) -> Tensor:
    """``(proteins, terms)`` logits ``exp(logit_scale) * sim(p, term) + bias`` (``bias``: per term or scalar)."""
    return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * similarity(p.float(), terms.float(), geometry) + bias


def term_matching_loss(p: Tensor, terms: Tensor, labels: Tensor, geometry: Manifold, logit_scale: Tensor,
                       bias: Tensor) -> Tensor:
    """Mean binary cross-entropy of :func:`term_matching_logits` against 0/1 ``labels``."""
    logits = term_matching_logits(p, terms, geometry, logit_scale, bias)
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
