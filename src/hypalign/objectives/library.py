"""The built-in objective kinds (:mod:`hypalign.objectives.base`), each a thin binding of a loss of
:mod:`hypalign.losses` to the model's outputs. Bindings name output keys (``a``, ``b``, ``general`` …), batch keys
and model attributes (``geometry``, ``scale``), so one kind serves every recipe:

========================  ===================================================================================
kind                      term (paper)
========================  ===================================================================================
``contrastive``           symmetric InfoNCE ``clip_loss(out[a], out[b])`` with ``model.<scale>`` (CLIP; MERU eq. 5)
``entailment``            mean over pairs of MERU's cone loss ``max(0, ext(g, s) - aper(g))`` (MERU eq. 9)
``term_matching``         BCE of ``model.term_logits(out[p], out[terms], batch[cand])`` vs ``batch[labels]`` (+ mask)
``masked_lm``             cross-entropy of ``out[logits]`` vs ``batch[labels]`` (-100 ignored; BERT / ESM MLM)
``masked_bits``           per-bit BCE of ``out[logits]`` vs the bits of code labels (DPLM-2 Bit's structure loss)
``repa_cosine``           ``−cos(out[pred], batch[target])`` averaged over ``batch[mask]`` (REPA alignment)
``residual_diffusion``    ResDiff's ε-prediction loss on the quantisation residual ``z − sign(z)`` (DPLM-2.1)
``segment_alignment``     ProtCLIP's L_PDA over ``out[u]``, ``out[residues]``
``pairwise_ce``           Hyp-ViT's pairwise cross-entropy over ``out[z]`` laid out class by class
``walk_decoding``         InfoAlign's walk-weighted BCE of each decoder against the context a random walk reached
``gaussian_kl``           the bottleneck's ``log q(z|x) - log p(z)`` (InfoAlign's minimality term)
``context_contrastive``   InfoNCE between molecules and the context nodes their walks reached (shared nodes)
========================  ===================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from hypalign.objectives.base import Objective, register_objective


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@register_objective("contrastive")
class Contrastive(Objective):
    """``clip_loss(out[a], out[b], model.<geometry>, model.<scale>)``; under DDP both sides are gathered with their
    gradient. Bindings: ``a``, ``b`` (output keys), ``geometry`` (model attribute, default ``geometry``),
    ``scale`` (model attribute holding the log temperature, default ``logit_scale``)."""

    def __init__(self, weight: float = 1.0, a: str = "a", b: str = "b", geometry: str = "geometry",
                 scale: str = "logit_scale") -> None:
        super().__init__(weight, a=a, b=b, geometry=geometry, scale=scale)
        self.a, self.b, self.geometry, self.scale = a, b, geometry, scale
        self.outputs = (a, b)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.contrastive import clip_loss

        m = _unwrap(model)
        return clip_loss(outputs[self.a], outputs[self.b], getattr(m, self.geometry), getattr(m, self.scale))


@register_objective("entailment")
class Entailment(Objective):
    """Mean over ``pairs`` of :func:`~hypalign.losses.contrastive.entailment_loss` (general entails specific).
    A pair is ``(general key, specific key)`` or ``(general key, specific key, general rows key, specific rows
    key)``, the row keys naming batch index tensors that select the rows to pair. Shorthand for one pair:
    ``general=…, specific=…``. A pair with no rows in a batch is left out of the mean. Needs a geometry with cones
    (Lorentz or Poincaré)."""

    def __init__(self, weight: float = 1.0, general: str | None = None, specific: str | None = None,
                 pairs: tuple[tuple[str, ...], ...] = (), geometry: str = "geometry") -> None:
        if general is not None and specific is not None:
            pairs = ((general, specific), *pairs)
        if not pairs:
            raise ValueError("entailment: bind general/specific or pairs")
        super().__init__(weight, pairs=pairs, geometry=geometry)
        self.pairs = tuple(tuple(p) for p in pairs)
        self.geometry = geometry
        self.outputs = tuple(dict.fromkeys(k for p in self.pairs for k in p[:2]))
        self.batch_keys = tuple(dict.fromkeys(k for p in self.pairs for k in p[2:]))

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.contrastive import entailment_loss

        geo = getattr(_unwrap(model), self.geometry)
        total, n = None, 0
        for p in self.pairs:
            g, s = outputs[p[0]], outputs[p[1]]
            if len(p) == 4:
                g, s = g[batch[p[2]]], s[batch[p[3]]]
            if not len(g):  # no rows to pair in this batch (e.g. no parent-child pair): not a term of the mean
                continue
            term = entailment_loss(g, s, geo)
            total, n = (term if total is None else total + term), n + 1
        if total is None:
            return outputs[self.pairs[0][0]].sum() * 0.0
        return total / n


@register_objective("term_matching")
class TermMatching(Objective):
    """Binary cross-entropy of ``model.term_logits(out[p], out[terms], batch[cand])`` against ``batch[labels]``
    (multi-label matching of items against a set of candidate label texts, e.g. proteins and GO terms).

    ``weights`` (a batch key, optional in each batch): a ``(items, candidates)`` 0/1 mask of the known labels;
    the loss is then ``Σ w · BCE / Σ w`` — an item not annotated in some label set (a protein without MF terms)
    says nothing about that set's candidates, rather than that none of them applies. Without it in a batch,
    the plain mean (every label known)."""

    def __init__(self, weight: float = 1.0, p: str = "protein", terms: str = "terms", cand: str = "cand",
                 labels: str = "labels", weights: str | None = None) -> None:
        super().__init__(weight, p=p, terms=terms, cand=cand, labels=labels, weights=weights)
        self.p, self.terms, self.cand, self.labels, self.weights = p, terms, cand, labels, weights
        self.outputs, self.batch_keys = (p, terms), (cand, labels)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        logits = _unwrap(model).term_logits(outputs[self.p], outputs[self.terms], batch[self.cand])
        w = batch.get(self.weights) if self.weights else None
        if w is None:
            return nn.functional.binary_cross_entropy_with_logits(logits, batch[self.labels])
        bce = nn.functional.binary_cross_entropy_with_logits(logits, batch[self.labels], reduction="none")
        return (bce * w).sum() / w.sum().clamp_min(1.0)


@register_objective("masked_lm")
class MaskedLM(Objective):
    """``cross_entropy(out[logits], batch[labels])`` over every position, label -100 ignored (masked-token
    prediction: ESM/BERT MLM, ProtCLIP's MLM and BSR); with ``weights`` (a batch key: a weight per position, e.g.
    DPLM's ``λ(t)`` of absorbing diffusion) ``Σ w · CE / (number of labelled positions)``."""

    def __init__(self, weight: float = 1.0, logits: str = "mlm_logits", labels: str = "mlm_labels",
                 weights: str | None = None) -> None:
        super().__init__(weight, logits=logits, labels=labels, weights=weights)
        self.logits, self.labels, self.weights = logits, labels, weights
        self.outputs, self.batch_keys = (logits,), (labels,) + ((weights,) if weights else ())

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        logits, labels = outputs[self.logits].flatten(0, 1), batch[self.labels].flatten()
        if not self.weights:
            return nn.functional.cross_entropy(logits, labels)
        ce = nn.functional.cross_entropy(logits.float(), labels, reduction="none")
        return (ce * batch[self.weights].flatten()).sum() / (labels != -100).sum().clamp_min(1)


@register_objective("masked_bits")
class MaskedBits(Objective):
    """DPLM-2 Bit's structure-token loss (spec §5.2.1): per labelled position the binary cross-entropy of each of the
    ``n`` logits ``out[logits]`` ``(B, L, n)`` (``p(bit_k = 1)``) against bit ``k`` of the code ``batch[labels]``
    ``(B, L)`` (-100: not labelled), averaged over the ``n`` bits; with ``weights`` (per position, e.g. ``λ(t)``)
    ``Σ w · mean_k BCE / (number of labelled positions)`` — :class:`MaskedLM`'s normalisation, so the two heads'
    losses are on one scale per position."""

    def __init__(self, weight: float = 1.0, logits: str = "struct_logits", labels: str = "struct_labels",
                 weights: str | None = None) -> None:
        super().__init__(weight, logits=logits, labels=labels, weights=weights)
        self.logits, self.labels, self.weights = logits, labels, weights
        self.outputs, self.batch_keys = (logits,), (labels,) + ((weights,) if weights else ())

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.models.dplm2 import code_bits

        logits, labels = outputs[self.logits].float(), batch[self.labels]
        keep = labels != -100
        target = code_bits(labels.clamp_min(0), logits.shape[-1]).to(logits.dtype)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
        w = batch[self.weights].to(bce.dtype) if self.weights else keep.to(bce.dtype)
        return (bce * w * keep).sum() / keep.sum().clamp_min(1)


@register_objective("repa_cosine")
class RepaCosine(Objective):
    """REPA's alignment (Yu et al. 2025; DPLM-2.1 §5.2.5): ``−(1/N) Σ_i cos(out[pred]_i, batch[target]_i)`` over the
    ``N`` positions where ``batch[mask]`` is true (projected hidden states against structure features, each
    ``(B, L, k)``)."""

    def __init__(self, weight: float = 1.0, pred: str = "repa", target: str = "struct_feats",
                 mask: str = "feat_mask") -> None:
        super().__init__(weight, pred=pred, target=target, mask=mask)
        self.pred, self.target, self.mask = pred, target, mask
        self.outputs, self.batch_keys = (pred,), (target, mask)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        m = batch[self.mask]
        cos = nn.functional.cosine_similarity(outputs[self.pred].float(), batch[self.target].float(), dim=-1)
        return -(cos * m).sum() / m.sum().clamp_min(1)


@register_objective("residual_diffusion")
class ResidualDiffusion(Objective):
    """ResDiff's loss (spec §5.2.2; :class:`hypalign.models.dplm2.ResDiff`): for the continuous codes
    ``z = batch[feats]`` the residual ``r0 = z − sign(z)``, noised at ``batch[t]`` with ``batch[eps]`` (drawn with the
    batch, so a resumed run draws the same), ``‖ε − ε̂‖²`` averaged over the residues of ``batch[mask]``;
    conditioned on ``sign(z)`` and the model's ``out[cond]``."""

    def __init__(self, weight: float = 1.0, cond: str = "resdiff_cond", feats: str = "struct_feats",
                 t: str = "resdiff_t", eps: str = "resdiff_eps", mask: str = "feat_mask") -> None:
        super().__init__(weight, cond=cond, feats=feats, t=t, eps=eps, mask=mask)
        self.cond, self.feats, self.t, self.eps, self.mask = cond, feats, t, eps, mask
        self.outputs, self.batch_keys = (cond,), (feats, t, eps, mask)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        z = batch[self.feats].float()
        zq = (z >= 0).to(z.dtype) * 2 - 1
        return _unwrap(model).resdiff.loss(z - zq, batch[self.t], batch[self.eps], zq, outputs[self.cond].float(),
                                           batch[self.mask])


@register_objective("segment_alignment")
class SegmentAlignment(Objective):
    """ProtCLIP's L_PDA (:func:`~hypalign.losses.contrastive.segment_alignment_loss`) between property texts
    ``out[u]`` and residues ``out[residues]`` of ``batch[ids]`` (padding from the token ids)."""

    def __init__(self, weight: float = 1.0, u: str = "pda_u", residues: str = "pda_residues", ids: str = "ids",
                 scale: str = "local_logit_scale", theta: float = 0.3) -> None:
        super().__init__(weight, u=u, residues=residues, ids=ids, scale=scale, theta=theta)
        self.u, self.residues, self.ids, self.scale, self.theta = u, residues, ids, scale, theta
        self.outputs, self.batch_keys = (u, residues), (ids,)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.encoders.protein import residue_mask
        from hypalign.losses.contrastive import segment_alignment_loss

        return segment_alignment_loss(outputs[self.u], outputs[self.residues], residue_mask(batch[self.ids]),
                                      getattr(_unwrap(model), self.scale), self.theta)


@register_objective("pairwise_ce")
class PairwiseCE(Objective):
    """Hyp-ViT's pairwise cross-entropy (:func:`~hypalign.losses.pairwise.pairwise_ce_loss`) over ``out[z]``
    gathered from every process with its gradient, ``samples_per_class`` rows per class, temperature ``tau``;
    ``batch[labels]`` must be laid out class by class (checked)."""

    def __init__(self, weight: float = 1.0, z: str = "z", labels: str = "labels", samples_per_class: int = 2,
                 tau: float = 0.2, geometry: str = "geometry") -> None:
        super().__init__(weight, z=z, labels=labels, samples_per_class=samples_per_class, tau=tau, geometry=geometry)
        self.z, self.labels, self.m, self.tau, self.geometry = z, labels, samples_per_class, tau, geometry
        self.outputs, self.batch_keys = (z,), (labels,)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign import distributed as dist_utils
        from hypalign.losses.pairwise import pairwise_ce_loss

        z = dist_utils.all_gather_with_grad(outputs[self.z])
        labels = dist_utils.all_gather_no_grad(batch[self.labels])
        z = z.view(-1, self.m, z.shape[-1])
        if not bool((labels.view(-1, self.m) == labels.view(-1, self.m)[:, :1]).all()):
            raise RuntimeError("batch is not laid out class by class")  # a sampler bug, never user input
        loss, _ = pairwise_ce_loss(z, getattr(_unwrap(model), self.geometry), self.tau, stats=False)
        return loss


@register_objective("backbone")
class BackboneReconstruction(Objective):
    """Reconstructed backbone ``out[pred]`` against ``batch[target]`` (``(B, L, 4, 3)``, residues ``batch[mask]``):
    ``loss="fape"`` — AlphaFold 2's frame-aligned point error (:func:`~hypalign.losses.structure.fape`, clamped at
    10 Å, in units of 10 Å); ``"aligned"`` — the mean over chains of the Kabsch-superposed squared atom error (Å²,
    :func:`~hypalign.losses.structure.aligned_sq_error`); plus ``distance_weight`` × the CA–CA distance error below
    ``cutoff`` Å (alignment-free; off by default: added to FAPE it slowed fitting two chains from 0.7 Å to 10.7 Å
    after 300 steps); plus ``step_weight`` × the error of the predicted steps between consecutive frames
    ``out[steps]`` (:func:`~hypalign.losses.structure.step_error`, Å; when ``steps`` is given)."""

    def __init__(self, weight: float = 1.0, pred: str = "coords_q", target: str = "coords", mask: str = "mask",
                 loss: str = "fape", distance_weight: float = 0.0, cutoff: float = 15.0, steps: str | None = None,
                 step_weight: float = 1.0) -> None:
        if loss not in ("fape", "aligned"):
            raise ValueError(f"backbone loss {loss!r}: expected fape or aligned")
        super().__init__(weight, pred=pred, target=target, mask=mask, loss=loss, distance_weight=distance_weight,
                         cutoff=cutoff, steps=steps, step_weight=step_weight)
        self.pred, self.target, self.mask, self.loss = pred, target, mask, loss
        self.distance_weight, self.cutoff = distance_weight, cutoff
        self.steps, self.step_weight = steps, step_weight
        self.outputs, self.batch_keys = (pred,) + ((steps,) if steps else ()), (target, mask)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.structure import aligned_sq_error, distance_loss, fape, step_error

        pred, target, mask = outputs[self.pred].float(), batch[self.target].float(), batch[self.mask]
        loss = fape(pred, target, mask) if self.loss == "fape" else aligned_sq_error(pred, target, mask).mean()
        if self.distance_weight:
            loss = loss + self.distance_weight * distance_loss(pred[:, :, 1], target[:, :, 1], mask, self.cutoff)
        if self.steps and self.step_weight:
            loss = loss + self.step_weight * step_error(outputs[self.steps], target, mask)
        return loss


@register_objective("lfq_entropy")
class LFQEntropy(Objective):
    """Lookup-free quantisation's entropy term on the continuous codes ``out[z]`` (:func:`~hypalign.losses.structure.
    lfq_entropy`): confident codes per residue, an evenly used codebook."""

    def __init__(self, weight: float = 1.0, z: str = "z", mask: str = "mask", tau: float = 1.0) -> None:
        super().__init__(weight, z=z, mask=mask, tau=tau)
        self.z, self.mask, self.tau = z, mask, tau
        self.outputs, self.batch_keys = (z,), (mask,)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.structure import lfq_entropy

        return lfq_entropy(outputs[self.z], batch[self.mask], self.tau)


@register_objective("commitment")
class Commitment(Objective):
    """``|z − sign(z)|²`` of the continuous codes ``out[z]`` (:func:`~hypalign.losses.structure.commitment`)."""

    def __init__(self, weight: float = 1.0, z: str = "z", mask: str = "mask") -> None:
        super().__init__(weight, z=z, mask=mask)
        self.z, self.mask = z, mask
        self.outputs, self.batch_keys = (z,), (mask,)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.structure import commitment

        return commitment(outputs[self.z], batch[self.mask])


@register_objective("walk_decoding")
class WalkDecoding(Objective):
    """InfoAlign's sufficiency term: the sum over the decoders of the walk-weighted BCE of ``out[decoded][name]``
    (``(B, D)`` logits from ``μ``) against ``batch[targets][name]``: ``("nodes", index (B, K), weights (B, K))`` —
    which node of that type each walk position reached (:func:`~hypalign.losses.context.walk_node_loss`) — or
    ``("profile", targets (B, K, D), weights (B, K))`` (:func:`~hypalign.losses.context.walk_profile_loss`)."""

    def __init__(self, weight: float = 1.0, decoded: str = "decoded", targets: str = "walk_targets") -> None:
        super().__init__(weight, decoded=decoded, targets=targets)
        self.decoded, self.targets = decoded, targets
        self.outputs, self.batch_keys = (decoded,), (targets,)

    def compute(self, outputs: Mapping[str, Any], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.context import walk_node_loss, walk_profile_loss

        total: Tensor | None = None
        for name, (kind, target, weights) in batch[self.targets].items():
            x = outputs[self.decoded][name]
            term = walk_node_loss(x, target, weights) if kind == "nodes" else walk_profile_loss(x, target, weights)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("walk_decoding: the batch has no walk targets")
        return total


@register_objective("gaussian_kl")
class GaussianKL(Objective):
    """The information bottleneck's minimality term: the single-sample ``log q(z|x) − log p(z)`` of ``out[z]`` under
    ``N(out[mu], out[sigma]²)`` against ``N(0, I)`` (:func:`~hypalign.losses.context.gaussian_kl_sample`)."""

    def __init__(self, weight: float = 1.0, mu: str = "mu", sigma: str = "sigma", z: str = "z") -> None:
        super().__init__(weight, mu=mu, sigma=sigma, z=z)
        self.mu, self.sigma, self.z = mu, sigma, z
        self.outputs = (mu, sigma, z)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.context import gaussian_kl_sample

        return gaussian_kl_sample(outputs[self.mu], outputs[self.sigma], outputs[self.z])


@register_objective("context_contrastive")
class ContextContrastive(Objective):
    """:func:`~hypalign.losses.context.context_infonce` of ``out[mol]`` and ``out[ctx]`` with the node ids
    ``batch[nodes]``, in ``model.<geometry>`` at ``model.<scale>`` (CLOOME-style alignment of a molecule with its
    context; several molecules may share a node)."""

    def __init__(self, weight: float = 1.0, mol: str = "align_mol", ctx: str = "align_ctx",
                 nodes: str = "align_nodes", geometry: str = "geometry", scale: str = "logit_scale") -> None:
        super().__init__(weight, mol=mol, ctx=ctx, nodes=nodes, geometry=geometry, scale=scale)
        self.mol, self.ctx, self.nodes, self.geometry, self.scale = mol, ctx, nodes, geometry, scale
        self.outputs, self.batch_keys = (mol, ctx), (nodes,)

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        from hypalign.losses.context import context_infonce

        m = _unwrap(model)
        return context_infonce(outputs[self.mol], outputs[self.ctx], batch[self.nodes], getattr(m, self.geometry),
                               getattr(m, self.scale))
