"""DPLM-2 on held-out chains (spec §5.3; metrics from :mod:`hypalign.eval.structure`):

* **folding** — the sequence given, the structure tokens by greedy mask-predict, decoded into a backbone by the
  structure tokenizer: structure-token accuracy at the index and the bit level (the paper's Table 3 diagnostic; also
  of one forward pass with the whole structure half masked, ``*_one_pass``), CA
  RMSD and TM-score against the true backbone, beside the tokenizer's own reconstruction from the true tokens (the
  ceiling any folding through these tokens has);
* **inverse folding** — the structure tokens given, the sequence by greedy mask-predict: amino-acid recovery (AAR);
* **the sequence-template baseline** (:func:`template_baseline`) — the best DIAMOND hit among the training chains,
  aligned and copied (:func:`hypalign.eval.structure.template_model`): what homology modelling gives at this
  identity level.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from hypalign.data.structures import StructureSet
from hypalign.models.dplm2 import DPLM2, STRUCT_BOS, STRUCT_EOS, STRUCT_MASK, STRUCT_OFFSET, STRUCT_PAD, code_bits
from hypalign.models.structok import StructureTokenizer
from hypalign.recipes.dplm2.sampling import SampleOptions, mask_predict


def _halves(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty ``(struct_ids, aa_ids)`` ``(B, P)``: specials in place, every residue position masked."""
    from hypalign.encoders.protein import CLS, EOS, MASK, PAD

    p = max(lengths) + 2
    st = torch.full((len(lengths), p), STRUCT_PAD, dtype=torch.long)
    aa = torch.full((len(lengths), p), PAD, dtype=torch.long)
    for r, n in enumerate(lengths):
        st[r, 0], st[r, 1 : n + 1], st[r, n + 1] = STRUCT_BOS, STRUCT_MASK, STRUCT_EOS
        aa[r, 0], aa[r, 1 : n + 1], aa[r, n + 1] = CLS, MASK, EOS
    return st, aa


def fold(model: DPLM2, sequences: list[str], opts: SampleOptions, batch: int = 8) -> list[np.ndarray]:
    """Structure codes per residue for each sequence (the structure half generated, the sequence given)."""
    from hypalign.data.sequences import SequenceSet, window_ids

    ss = SequenceSet.from_strings([str(i) for i in range(len(sequences))], sequences)
    out: list[np.ndarray] = [np.zeros(0, np.int64)] * len(sequences)
    order = np.argsort([len(s) for s in sequences], kind="stable")
    for s in range(0, len(order), batch):
        rows = order[s : s + batch].tolist()
        lengths = [len(sequences[r]) for r in rows]
        st, _ = _halves(lengths)
        aa = window_ids(ss, [(r, 0) for r in rows], max(lengths) + 2)
        st, _ = mask_predict(model, st, aa, opts)
        for j, (r, n) in enumerate(zip(rows, lengths, strict=True)):
            out[r] = (st[j, 1 : n + 1] - STRUCT_OFFSET).numpy()
    return out


def fold_one_pass(model: DPLM2, sequences: list[str], batch: int = 8) -> list[np.ndarray]:
    """Structure codes from one forward pass with the whole structure half masked (each position's most likely code
    or bits, no iteration): the per-position accuracy of the model before decoding."""
    return fold(model, sequences, SampleOptions(steps=1, greedy=True), batch)


def design(model: DPLM2, codes: list[np.ndarray], opts: SampleOptions, batch: int = 8) -> list[str]:
    """A sequence for each chain's structure codes (the sequence half generated, the structure given)."""
    from hypalign.data.sequences import _LETTERS

    out = [""] * len(codes)
    order = np.argsort([len(c) for c in codes], kind="stable")
    for s in range(0, len(order), batch):
        rows = order[s : s + batch].tolist()
        lengths = [len(codes[r]) for r in rows]
        st, aa = _halves(lengths)
        for j, r in enumerate(rows):
            st[j, 1 : lengths[j] + 1] = torch.from_numpy(np.asarray(codes[r], np.int64)) + STRUCT_OFFSET
        _, aa = mask_predict(model, st, aa, opts)
        for j, (r, n) in enumerate(zip(rows, lengths, strict=True)):
            out[r] = _LETTERS[aa[j, 1 : n + 1].numpy()].tobytes().decode("ascii")
    return out


def generate(model: DPLM2, lengths: list[int], opts: SampleOptions, seed: int = 0, batch: int = 8
             ) -> list[tuple[np.ndarray, str]]:
    """Co-generation: ``(structure codes, sequence)`` for each length, both halves from nothing."""
    from hypalign.data.sequences import _LETTERS

    gen = torch.Generator().manual_seed(seed)
    out: list[tuple[np.ndarray, str]] = []
    for s in range(0, len(lengths), batch):
        part = lengths[s : s + batch]
        st, aa = mask_predict(model, *_halves(part), opts, generator=gen)
        for j, n in enumerate(part):
            out.append(((st[j, 1 : n + 1] - STRUCT_OFFSET).numpy(),
                        _LETTERS[aa[j, 1 : n + 1].numpy()].tobytes().decode("ascii")))
    return out


@torch.no_grad()
def decode_codes(tok: StructureTokenizer, codes: list[np.ndarray]) -> list[np.ndarray]:
    """Backbones ``(L, 4, 3)`` (Å) rebuilt by the tokenizer's decoder from code sequences."""
    return decode_z(tok, [tok.bits(torch.from_numpy(np.asarray(c, np.int64))).numpy() for c in codes])


@torch.no_grad()
def decode_z(tok: StructureTokenizer, zs: list[np.ndarray]) -> list[np.ndarray]:
    """Backbones ``(L, 4, 3)`` (Å) rebuilt by the tokenizer's decoder from per-residue codes ``(L, bits)`` (±1, or
    continuous: the decoder's continuous path)."""
    out = []
    for z in zs:
        zt = torch.from_numpy(np.asarray(z, np.float32))[None]
        out.append(tok.decode(zt, torch.ones(zt.shape[:2], dtype=torch.bool))[0].numpy())
    return out


@torch.no_grad()
def resdiff_refine(model: DPLM2, sequences: list[str], codes: list[np.ndarray], seed: int = 0, batch: int = 8
                   ) -> list[np.ndarray]:
    """ResDiff's continuous codes ``z_q + r̂`` ``(L, bits)`` for folded proteins: the language model's states of the
    completed pair (``codes`` beside ``sequences``) condition the residual's reverse diffusion."""
    from hypalign.data.sequences import SequenceSet, window_ids

    gen = torch.Generator().manual_seed(seed)
    ss = SequenceSet.from_strings([str(i) for i in range(len(sequences))], sequences)
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    dev = model.type_emb.weight.device
    for s in range(0, len(sequences), batch):
        rows = list(range(s, min(s + batch, len(sequences))))
        lengths = [len(sequences[r]) for r in rows]
        st, _ = _halves(lengths)
        for j, r in enumerate(rows):
            st[j, 1 : lengths[j] + 1] = torch.from_numpy(np.asarray(codes[r], np.int64)) + STRUCT_OFFSET
        aa = window_ids(ss, [(r, 0) for r in rows], max(lengths) + 2)
        cond = model(st.to(dev), aa.to(dev))["resdiff_cond"]
        for j, (r, n) in enumerate(zip(rows, lengths, strict=True)):
            zq = (code_bits(torch.from_numpy(np.asarray(codes[r], np.int64)), model.n_bits) * 2 - 1).float().to(dev)
            out[r] = (zq + model.resdiff.sample(zq, cond[j, 1 : n + 1].float(), gen)).cpu().numpy()
    return out


def structure_metrics(pred: list[np.ndarray], ss: StructureSet, prefix: str, per_chain: bool = False
                      ) -> dict[str, Any]:
    """``{prefix}_rmsd_median/_mean``, ``{prefix}_tm_median/_mean`` of backbones ``pred`` against the chains of
    ``ss`` (and the per-chain lists ``{prefix}_rmsd`` / ``{prefix}_tm`` with ``per_chain``)."""
    from hypalign.eval.structure import ca_rmsd, tm_score

    rmsd = np.array([ca_rmsd(p, ss.backbone(i)) for i, p in enumerate(pred)])
    tm = np.array([tm_score(p, ss.backbone(i), ss.sequence(i)) for i, p in enumerate(pred)])
    out: dict[str, Any] = {f"{prefix}_rmsd_median": float(np.median(rmsd)), f"{prefix}_rmsd_mean": float(rmsd.mean()),
                           f"{prefix}_tm_median": float(np.median(tm)), f"{prefix}_tm_mean": float(tm.mean())}
    if per_chain:
        out[f"{prefix}_rmsd"], out[f"{prefix}_tm"] = rmsd.tolist(), tm.tolist()
    return out


def evaluate_chains(model: DPLM2, tok: StructureTokenizer, ss: StructureSet, steps: int = 25,
                    per_chain: bool = False) -> dict[str, Any]:
    """Folding and inverse folding of every chain of ``ss`` (module docstring); chains longer than the model's
    ``max_residues`` are left out and counted (``n_too_long``). ``per_chain`` adds the lists ``chains`` (ids),
    ``fold_rmsd``, ``fold_tm``, ``tokenizer_rmsd``, ``tokenizer_tm``, ``aar``."""
    from hypalign.eval.structure import sequence_recovery, token_accuracy
    from hypalign.recipes.dplm2.tokens import structure_tokens

    was = model.training
    model.eval()
    keep = np.flatnonzero(ss.lengths() <= model.max_residues)
    out: dict[str, Any] = {"n_chains": float(len(keep)), "n_too_long": float(len(ss) - len(keep))}
    ss = ss.subset(keep)
    true, continuous = structure_tokens(tok, ss)
    seqs = [ss.sequence(i) for i in range(len(ss))]
    opts = SampleOptions(steps=steps, greedy=True)
    with torch.no_grad():
        t0 = time.perf_counter()
        folded = fold(model, seqs, opts)
        out["fold_chains_per_s"] = len(ss) / max(time.perf_counter() - t0, 1e-9)
        designed = design(model, true, opts)
        one_pass = fold_one_pass(model, seqs)
    out.update(token_accuracy(folded, true, model.n_bits))
    out.update({f"{k}_one_pass": v for k, v in token_accuracy(one_pass, true, model.n_bits).items()})
    out.update(structure_metrics(decode_codes(tok, folded), ss, "fold", per_chain))
    out.update(structure_metrics(decode_codes(tok, true), ss, "tokenizer", per_chain))
    if model.resdiff_hidden:  # the folded codes refined by ResDiff, and that path's ceiling: the true continuous codes
        refined = resdiff_refine(model, seqs, folded)
        out.update(structure_metrics(decode_z(tok, refined), ss, "fold_resdiff", per_chain))
        out.update(structure_metrics(decode_z(tok, continuous), ss, "tokenizer_continuous", per_chain))
    aar = np.array([sequence_recovery(d, s) for d, s in zip(designed, seqs, strict=True)])
    out["aar_median"], out["aar_mean"] = float(np.median(aar)), float(aar.mean())
    if per_chain:
        out["chains"], out["aar"] = list(ss.ids), aar.tolist()
    model.train(was)
    return out


def template_baseline(train: StructureSet, test: StructureSet, evalue: float = 10.0) -> dict[str, Any]:
    """Each test chain modelled on its best DIAMOND hit among the training chains (``more-sensitive``, e-value ≤
    ``evalue``, highest bit score), aligned and copied (:func:`hypalign.eval.structure.template_model`). Returns
    ``rows`` (test rows with a template), ``backbones`` (their models), ``identity`` (DIAMOND's, %), ``coverage``
    (share of residues aligned)."""
    from hypalign.data.seqtools import diamond_blastp
    from hypalign.eval.structure import template_model

    seqs = [test.sequence(i) for i in range(len(test))]
    ref = [train.sequence(i) for i in range(len(train))]
    hits = diamond_blastp([str(i) for i in range(len(test))], seqs, [str(i) for i in range(len(train))], ref,
                          evalue=evalue, max_target_seqs=0)
    best: dict[int, tuple[float, int, float]] = {}
    for q, t, bits, ident in zip(hits.query, hits.target, hits.bitscore, hits.pident, strict=True):
        if int(q) not in best or bits > best[int(q)][0]:
            best[int(q)] = (float(bits), int(t), float(ident))
    rows, models, identity, coverage = [], [], [], []
    for q in sorted(best):
        _, t, ident = best[q]
        bb, cov = template_model(seqs[q], ref[t], train.backbone(t))
        rows.append(q)
        models.append(bb)
        identity.append(ident)
        coverage.append(cov)
    return {"rows": rows, "backbones": models, "identity": identity, "coverage": coverage}


__all__ = ["decode_codes", "decode_z", "design", "evaluate_chains", "fold", "fold_one_pass", "generate",
           "resdiff_refine", "structure_metrics", "template_baseline"]
