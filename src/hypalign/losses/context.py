"""InfoAlign's losses (spec §4.3): decoding the context a random walk reaches from a molecule, weighted by the walk's
path weight, and the information bottleneck's minimality term.

Shapes: ``B`` molecules, ``K = walk length + 1`` walk positions (position 0 is the molecule itself), ``D`` outputs of
a decoder. ``weights[b, k] = Π_{j<=k} w_j`` (:func:`hypalign.data.context_graph.random_walks`; 0 after a stuck step).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def walk_profile_loss(logits: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """``L_m = mean over (b, k, d) with y_bkd not NaN of w_bk · BCEWithLogits(x_bd, y_bkd)``: the decoder's output
    ``x_b`` (``(B, D)``, read from the molecule's ``μ``) against the targets of every walk position (``(B, K, D)``,
    soft labels in [0, 1]; NaN where the node has no such target: another type, no profile), as InfoAlign's
    sufficiency loss (a plain mean over the entries that have a target). 0 when no entry has one."""
    known = torch.isfinite(targets)
    x = logits.float()[:, None, :].expand_as(targets)
    bce = F.binary_cross_entropy_with_logits(x, torch.where(known, targets, torch.zeros_like(targets)).float(),
                                             reduction="none")
    w = weights.float()[:, :, None].expand_as(targets)
    n = known.sum()
    return (bce * w)[known].sum() / n.clamp_min(1)


def walk_node_loss(logits: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """:func:`walk_profile_loss` with one-hot targets over the ``D`` nodes of one type: ``index[b, k]`` the reached
    node's position among them (``-1``: position ``k`` reached another type, or nothing). Computed without the
    ``(B, K, D)`` one-hot: ``BCE`` summed over ``d`` is ``Σ_d softplus(x_bd) − x_{b, index}``."""
    valid = index >= 0
    n = valid.sum()
    if int(n) == 0:
        return logits.sum() * 0.0
    x = logits.float()
    total = F.softplus(x).sum(1)  # (B,)
    hit = torch.gather(x, 1, index.clamp_min(0))  # (B, K)
    per = (total[:, None] - hit) * weights.float()
    return per[valid].sum() / (n * x.shape[1])


def gaussian_kl_sample(mu: Tensor, sigma: Tensor, z: Tensor) -> Tensor:
    """The single-sample estimate of ``KL(q(z|x) || N(0, I))`` InfoAlign uses: ``log q(z|x) − log p(z)`` at the
    reparameterised sample ``z = μ + σ ε``, summed over dimensions, averaged over the batch:
    ``Σ_d [−log σ_d − (z_d − μ_d)² / (2σ_d²) + z_d² / 2]`` (the ``log 2π`` terms cancel)."""
    s = sigma.float()
    log_q = -torch.log(s) - (z.float() - mu.float()) ** 2 / (2 * s**2)
    log_p = -(z.float() ** 2) / 2
    return (log_q - log_p).sum(-1).mean()


def gaussian_kl(mu: Tensor, sigma: Tensor) -> Tensor:
    """The closed form ``KL(N(μ, σ²) || N(0, I)) = ½ Σ_d (σ² + μ² − 1 − 2 log σ)``, batch mean — what the sample
    estimate :func:`gaussian_kl_sample` averages to (the tests check it)."""
    s = sigma.float()
    return 0.5 * (s**2 + mu.float() ** 2 - 1 - 2 * torch.log(s)).sum(-1).mean()


def context_infonce(mol: Tensor, ctx: Tensor, nodes: Tensor, geometry: Any, logit_scale: Tensor) -> Tensor:
    """CLOOME-style symmetric InfoNCE between molecules and the context nodes their walks reached, where several
    molecules may share one node (29 targets for thousands of molecules). ``mol``, ``ctx``: ``(B, e)`` points of
    the alignment space, ``nodes``: ``(B,)`` the node of each row (``-1``: none reached; the row is left out).

    With ``U`` the distinct nodes (each embedded once), ``s_iu = exp(logit_scale) · sim(mol_i, ctx_u)``
    (``−d_L`` in the Lorentz model, cosine on the sphere; the scale clamped at 100 as CLIP's):
    ``½ [ mean_i −log softmax_u(s_i·)[u_i]  +  mean_u −log Σ_{i: u_i = u} softmax_i(s_·u)[i] ]`` — molecule → its
    node among the batch's nodes, and node → any of its molecules among the batch's molecules (every molecule that
    reached it a positive, none a false negative). 0 (with a graph) when no row has a node."""
    keep = nodes >= 0
    if int(keep.sum()) == 0:
        return mol.sum() * 0.0
    mol, ctx, nodes = mol[keep], ctx[keep], nodes[keep]
    uniq, inv = torch.unique(nodes, return_inverse=True)
    rows = torch.arange(len(nodes), device=nodes.device)
    first = torch.full((len(uniq),), len(nodes), dtype=torch.long, device=nodes.device).scatter_reduce(
        0, inv, rows, reduce="amin")
    from hypalign.losses.contrastive import MAX_LOGIT_SCALE

    scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    logits = scale * geometry.similarity_matrix(mol.float(), ctx[first].float())  # (B, U)
    to_node = F.cross_entropy(logits, inv)
    logp = logits.T.log_softmax(1)  # (U, B): each node over the molecules
    positive = inv[None, :] == torch.arange(len(uniq), device=nodes.device)[:, None]
    to_mol = -torch.logsumexp(logp.masked_fill(~positive, float("-inf")), 1).mean()
    return 0.5 * (to_node + to_mol)
