"""Backbone reconstruction metrics (the structure tokenizer, spec §5.1): RMSD after superposition, TM-score, GDT-like
fractions, error by secondary structure, and code usage.

* :func:`ca_rmsd` — CA RMSD (Å) after the least-squares superposition (:func:`~hypalign.losses.structure.
  kabsch_superpose`), per chain;
* :func:`tm_score` — TM-score of a reconstruction against its reference with the residue correspondence known (the
  TMscore program's setting, via ``tmtools.tm_align`` given the identity alignment), normalised by the reference
  length; ``d0 = 1.24 (L − 15)^{1/3} − 1.8``;
* :func:`gdt` — after the RMSD superposition, the fractions of CA atoms within 1, 2, 4 and 8 Å and their mean
  (GDT_TS-like; GDT proper searches the superposition per cut-off);
* :func:`error_by_dssp` — mean CA deviation after superposition over helix (DSSP H, G, I), strand (E, B) and other
  (T, S, C and the rest) residues;
* :func:`code_usage` — codes used, dead codes and perplexity ``exp(H)`` of the code distribution;
* :func:`token_accuracy` — structure-token accuracy at the index level and at the bit level (DPLM-2's Table 3);
* :func:`sequence_recovery` — amino-acid recovery (AAR) of a designed sequence;
* :func:`template_model` — a backbone for a sequence from a template chain (homology modelling's baseline).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from hypalign.losses.structure import kabsch_superpose

DSSP_GROUPS = {"helix": "HGI", "strand": "EB", "other": "TSC"}


def _superposed_ca(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``pred`` CA ``(L, 3)`` superposed on ``target`` CA (float64)."""
    p = torch.from_numpy(np.asarray(pred, np.float64))[None, :, None]
    t = torch.from_numpy(np.asarray(target, np.float64))[None, :, None]
    return kabsch_superpose(p, t, torch.ones(1, p.shape[1], dtype=torch.bool))[0, :, 0].numpy()


def ca_rmsd(pred: np.ndarray, target: np.ndarray) -> float:
    """CA RMSD after superposition of ``(L, 3)`` arrays (or ``(L, 4, 3)`` backbones: their CA)."""
    pred, target = _ca(pred), _ca(target)
    return float(np.sqrt(((_superposed_ca(pred, target) - target) ** 2).sum(-1).mean()))


def tm_score(pred: np.ndarray, target: np.ndarray, sequence: str | None = None) -> float:
    """TM-score of ``pred`` against ``target`` (CA, known correspondence; module docstring)."""
    import tmtools

    pred, target = _ca(pred).astype(np.float64), _ca(target).astype(np.float64)
    seq = sequence if sequence is not None and len(sequence) == len(target) else "A" * len(target)
    res = tmtools.tm_align(np.ascontiguousarray(pred), np.ascontiguousarray(target), seq, seq, [seq, seq])
    return float(res.tm_norm_chain2)


def gdt(pred: np.ndarray, target: np.ndarray, cutoffs: Sequence[float] = (1.0, 2.0, 4.0, 8.0)) -> dict[str, float]:
    """``{"gdt_1": …, "gdt_2": …, "gdt_4": …, "gdt_8": …, "gdt_ts": mean}`` after the RMSD superposition."""
    pred, target = _ca(pred), _ca(target)
    d = np.sqrt(((_superposed_ca(pred, target) - target) ** 2).sum(-1))
    out = {f"gdt_{c:g}": float((d <= c).mean()) for c in cutoffs}
    out["gdt_ts"] = float(np.mean(list(out.values())))
    return out


def ca_deviation(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-residue CA deviation (Å) after superposition."""
    pred, target = _ca(pred), _ca(target)
    return np.sqrt(((_superposed_ca(pred, target) - target) ** 2).sum(-1))


def error_by_dssp(deviations: Sequence[np.ndarray], dssp: Sequence[str]) -> dict[str, float]:
    """Mean per-residue deviation over all chains' residues of each DSSP group present (``err_helix``,
    ``err_strand``, ``err_other``), with the groups' residue counts (``n_helix`` …)."""
    dev = np.concatenate([np.asarray(d, np.float64) for d in deviations])
    states = np.frombuffer("".join(dssp).encode("ascii"), np.uint8)
    out: dict[str, float] = {}
    for name, letters in DSSP_GROUPS.items():
        hit = np.isin(states, np.frombuffer(letters.encode(), np.uint8))
        if name == "other":
            hit = ~np.isin(states, np.frombuffer(b"HGIEB", np.uint8))
        if hit.any():  # a group without residues (files without DSSP: all "other") has no entry
            out[f"err_{name}"] = float(dev[hit].mean())
            out[f"n_{name}"] = int(hit.sum())
    return out


def code_usage(codes: np.ndarray, n_codes: int = 8192) -> dict[str, float]:
    """``codes_used``, ``dead_codes`` and ``perplexity`` (``exp`` of the entropy of the code frequencies, natural
    log; equals the number of codes when all are used evenly)."""
    counts = np.bincount(np.asarray(codes, np.int64).ravel(), minlength=n_codes).astype(np.float64)
    p = counts / max(counts.sum(), 1.0)
    nz = p[p > 0]
    return {"codes_used": int((counts > 0).sum()), "dead_codes": int((counts == 0).sum()),
            "perplexity": float(np.exp(-(nz * np.log(nz)).sum()))}


def token_accuracy(pred: Sequence[np.ndarray], true: Sequence[np.ndarray], n_bits: int = 13) -> dict[str, float]:
    """Over all residues of all chains: ``index_accuracy`` (the predicted code is the true one) and ``bit_accuracy``
    (share of the ``n_bits`` bits of each code that agree)."""
    p = np.concatenate([np.asarray(x, np.int64) for x in pred])
    t = np.concatenate([np.asarray(x, np.int64) for x in true])
    if p.shape != t.shape:
        raise ValueError(f"{p.shape[0]} predicted tokens for {t.shape[0]} true ones")
    agree = ((p[:, None] >> np.arange(n_bits)) & 1) == ((t[:, None] >> np.arange(n_bits)) & 1)
    return {"index_accuracy": float((p == t).mean()) if len(t) else 0.0,
            "bit_accuracy": float(agree.mean()) if len(t) else 0.0}


def sequence_recovery(designed: str, native: str) -> float:
    """Share of positions where ``designed`` has the native amino acid (same length)."""
    if len(designed) != len(native):
        raise ValueError(f"designed length {len(designed)} != native length {len(native)}")
    return sum(a == b for a, b in zip(designed, native, strict=True)) / max(len(native), 1)


def template_model(query: str, template: str, coords: np.ndarray) -> tuple[np.ndarray, float]:
    """A backbone ``(len(query), 4, 3)`` for ``query`` from a template chain (sequence ``template``, backbone
    ``coords``): the two sequences aligned globally (gemmi's Needleman–Wunsch, BLOSUM62), every aligned residue takes
    the template residue's atoms, a residue without one is placed on the straight line between the nearest aligned
    residues on either side (at a chain end: the nearest aligned residue's place). Returns ``(backbone, share of
    query residues aligned)`` — what copying the template gives, the baseline of homology modelling."""
    import gemmi

    kind = gemmi.ResidueKind.AA
    res = gemmi.align_string_sequences(gemmi.expand_one_letter_sequence(query, kind),
                                       gemmi.expand_one_letter_sequence(template, kind), [],
                                       gemmi.AlignmentScoring("b"))
    src = np.full(len(query), -1, np.int64)
    qi = ti = 0
    for n, op in ((int(m.group(1)), m.group(2)) for m in re.finditer(r"(\d+)([MID])", res.cigar_str())):
        if op == "M":
            src[qi : qi + n] = np.arange(ti, ti + n)
            qi, ti = qi + n, ti + n
        elif op == "I":  # query residues without a template residue
            qi += n
        else:
            ti += n
    out = np.zeros((len(query), *np.asarray(coords).shape[1:]), np.float64)
    known = np.flatnonzero(src >= 0)
    if len(known) == 0:
        return out, 0.0
    out[known] = np.asarray(coords, np.float64)[src[known]]
    for i in np.flatnonzero(src < 0):
        left, right = known[known < i], known[known > i]
        if len(left) and len(right):
            a, b = left[-1], right[0]
            out[i] = out[a] + (out[b] - out[a]) * (i - a) / (b - a)
        else:
            out[i] = out[left[-1] if len(left) else right[0]]
    return out, len(known) / len(query)


def _ca(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x[:, 1] if x.ndim == 3 else x
