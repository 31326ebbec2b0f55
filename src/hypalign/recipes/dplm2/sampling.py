"""Sampling from DPLM-2 (spec §5.1): iterative mask-predict (Ghazvininejad et al. 2019, as DPLM decodes) — every step
predicts every still-masked token, then re-masks the least confident of the tokens being generated so that after
step ``s`` of ``S`` a share ``1 − s/S`` stays masked (the tokens kept from earlier steps keep their scores, so a token
chosen early can be re-masked when the rest are more certain). Temperature anneals linearly from ``t_max`` to
``t_min`` over the steps (``annealing@t_max:t_min``; DPLM-2 index 2.0:1.0, Bit 1.1:0.1); amino acids are restricted to
the 20 standard ones, sampled with top-p 0.95 (greedy: argmax, as folding and inverse folding decode).

The three uses: **folding** (the structure half masked, the sequence given), **inverse folding** (the reverse) and
**co-generation** (both masked, from a length alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hypalign.models.dplm2 import DPLM2, STANDARD_AA_IDS, STRUCT_MASK, STRUCT_OFFSET, bits_code


@dataclass
class SampleOptions:
    """``steps`` of mask-predict; ``greedy`` (argmax) or sampling at the annealed temperature; ``top_p`` for amino
    acids when sampling."""

    steps: int = 100
    greedy: bool = True
    t_max: float = 1.0
    t_min: float = 1.0
    top_p: float = 0.95


def _structure_choice(logits: Tensor, kind: str, temp: float, greedy: bool, gen: torch.Generator | None
                      ) -> tuple[Tensor, Tensor]:
    """``(codes, log-probability of the choice)`` per position from the structure logits."""
    if kind == "bit":  # 13 independent bits
        lp1 = torch.nn.functional.logsigmoid(logits / temp)
        lp0 = torch.nn.functional.logsigmoid(-logits / temp)
        bits = logits > 0 if greedy else torch.rand(logits.shape, generator=gen) < lp1.exp()
        return bits_code(bits), torch.where(bits, lp1, lp0).sum(-1)
    lp = (logits / temp).log_softmax(-1)
    pick = lp.argmax(-1) if greedy else torch.multinomial(lp.exp().flatten(0, 1), 1, generator=gen).view(lp.shape[:2])
    return pick, lp.gather(-1, pick.unsqueeze(-1)).squeeze(-1)


def _residue_choice(logits: Tensor, temp: float, greedy: bool, top_p: float, gen: torch.Generator | None
                    ) -> tuple[Tensor, Tensor]:
    """``(ESM ids, log-probability)`` per position, restricted to the 20 standard amino acids."""
    allowed = torch.full((logits.shape[-1],), float("-inf"))
    allowed[list(STANDARD_AA_IDS)] = 0.0
    lp = (logits.float() / temp + allowed).log_softmax(-1)
    if greedy:
        pick = lp.argmax(-1)
    else:
        probs = lp.exp().flatten(0, 1)
        sorted_p, order = probs.sort(-1, descending=True)
        cut = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(cut, 0.0)
        pick = order.gather(-1, torch.multinomial(sorted_p, 1, generator=gen)).view(lp.shape[:2])
    return pick, lp.gather(-1, pick.unsqueeze(-1)).squeeze(-1)


def _remask(scores: Tensor, todo: Tensor, keep_masked: Tensor) -> Tensor:
    """Per row the ``keep_masked[row]`` positions of ``todo`` with the lowest ``scores``."""
    s = scores.masked_fill(~todo, float("inf"))
    rank = s.argsort(-1).argsort(-1)
    return (rank < keep_masked[:, None]) & todo


@torch.no_grad()
def mask_predict(model: DPLM2, struct_ids: Tensor, aa_ids: Tensor, opts: SampleOptions,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Fill every ``STRUCT_MASK`` of ``struct_ids`` and every ``<mask>`` of ``aa_ids`` (both ``(B, P)``, the model's
    halves, on the CPU) by mask-predict; returns the completed ``(struct_ids, aa_ids)`` (on the CPU; the model may
    live on a GPU)."""
    from hypalign.encoders.protein import MASK

    s, a = struct_ids.cpu().clone(), aa_ids.cpu().clone()
    todo_s, todo_a = s == STRUCT_MASK, a == MASK
    n_s, n_a = todo_s.sum(1), todo_a.sum(1)
    score_s = torch.zeros(s.shape)
    score_a = torch.zeros(a.shape)
    steps = max(1, opts.steps)
    for step in range(steps):
        temp = opts.t_min + (opts.t_max - opts.t_min) * (1 - step / steps)
        masked_s, masked_a = s == STRUCT_MASK, a == MASK
        if not (masked_s.any() or masked_a.any()):
            break
        dev = model.type_emb.weight.device  # tokens stay on the CPU; the model runs where it lives
        out = {k: v.float().cpu() for k, v in model(s.to(dev), a.to(dev)).items() if k != "hidden"}
        left = 1.0 - (step + 1) / steps
        if masked_s.any():
            codes, lp = _structure_choice(out["struct_logits"], model.struct_head_kind, temp, opts.greedy,
                                          generator)
            s = torch.where(masked_s, codes + STRUCT_OFFSET, s)
            score_s = torch.where(masked_s, lp, score_s)
            s = s.masked_fill(_remask(score_s, todo_s, (n_s * left).floor().long()), STRUCT_MASK)
        if masked_a.any():
            ids, lp = _residue_choice(out["aa_logits"], temp, opts.greedy, opts.top_p, generator)
            a = torch.where(masked_a, ids, a)
            score_a = torch.where(masked_a, lp, score_a)
            a = a.masked_fill(_remask(score_a, todo_a, (n_a * left).floor().long()), MASK)
    return s, a


__all__ = ["SampleOptions", "mask_predict"]
