"""ProtCLIP recipe (Zhou et al. 2025; spec §3) on Swiss-Prot + GO: data preparation, evaluation and
the baselines every model is compared with.

:func:`prepare_go_split` turns a split (:mod:`hypalign.data.splits`) into per-ontology label
matrices (annotations propagated to ancestors, true-path rule) and each held-out protein's most
specific terms; :func:`evaluate_scores` scores any ``(proteins x terms)`` matrix with
:func:`hypalign.eval.function.go_prediction_metrics`; :func:`run_baselines` computes term
frequency, DIAMOND transfer and their blend on the same split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hypalign.data.go import Ontology
from hypalign.data.protein import ONTOLOGIES, GODataset, metastudent_go_dataset
from hypalign.data.splits import PARTS, Split, load_split
from hypalign.eval import baselines as bl
from hypalign.eval.function import fmax, go_prediction_metrics


@dataclass
class GOSplitData:
    """A split joined with its proteins: ``rows[part]`` index ``data``; ``truth[ont][part]`` are propagated
    label matrices (``train`` as a scipy CSR matrix, the others dense uint8); ``specific[ont][part][i]``
    the most specific true terms of protein ``i`` (held-out parts)."""

    data: GODataset
    split: Split
    rows: dict[str, np.ndarray]
    ontologies: dict[str, Ontology]
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)
    specific: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)

    def sequences(self, part: str) -> list[str]:
        return [self.data.sequences[i] for i in self.rows[part]]

    def accessions(self, part: str) -> list[str]:
        return [self.data.accessions[i] for i in self.rows[part]]


def prepare_go_split(split: str | Split, data: GODataset | None = None, seed: int = 0,
                     ontologies: tuple[str, ...] = ONTOLOGIES) -> GOSplitData:
    """Load the split (name or directory) and build label matrices for each ontology."""
    import scipy.sparse as sp

    sp_ = split if isinstance(split, Split) else load_split(split, seed=seed)
    data = data if data is not None else metastudent_go_dataset()
    src = str(sp_.path) if sp_.path is not None else "split"
    rows = {p: data.indices(sp_.part(p), source=f"{src}/{p}.txt") for p in PARTS}
    out = GOSplitData(data, sp_, rows, {o: Ontology(o) for o in ontologies})
    for o, ont in out.ontologies.items():
        out.truth[o], out.specific[o] = {}, {}
        for p in PARTS:
            prop = [ont.propagate(data.terms[o][i]) for i in rows[p].tolist()]
            if p == "train":
                indptr = np.cumsum([0] + [len(x) for x in prop])
                idx = np.concatenate(prop) if prop else np.zeros(0, np.int64)
                out.truth[o][p] = sp.csr_matrix((np.ones(len(idx), np.float32), idx, indptr),
                                                shape=(len(prop), len(ont)))
            else:
                y = np.zeros((len(prop), len(ont)), dtype=np.uint8)
                for r, x in enumerate(prop):
                    y[r, x] = 1
                out.truth[o][p] = y
                out.specific[o][p] = [ont.most_specific(x) for x in prop]
    return out


def evaluate_scores(gsd: GOSplitData, ontology: str, part: str, scores: np.ndarray,
                    fmax_only: bool = False) -> dict[str, float]:
    """GO metrics of a ``(proteins of part x terms of ontology)`` score matrix (propagated by the caller).

    As in CAFA, the ontology's root term is left out (every protein has it; predicting it is free),
    and proteins annotated with the root alone do not count."""
    y = gsd.truth[ontology][part]
    if scores.shape != y.shape:
        raise ValueError(f"scores shaped {scores.shape}, expected {y.shape} ({part} proteins x {ontology} terms)")
    root = gsd.ontologies[ontology].root
    keep = np.ones(y.shape[1], dtype=bool)
    keep[root] = False
    if fmax_only:
        return {"fmax": fmax(scores[:, keep], y[:, keep]).fmax}
    remap = np.cumsum(keep) - 1
    spec = [remap[t[t != root]] for t in gsd.specific[ontology][part]]
    return go_prediction_metrics(scores[:, keep], y[:, keep], spec)


def diamond_hits(gsd: GOSplitData, part: str, threads: int | None = None) -> bl.Hits:
    """DIAMOND blastp (``--more-sensitive``, e <= 1e-3, 25 targets) of a held-out part against train."""
    from hypalign.data.seqtools import diamond_blastp

    return diamond_blastp(gsd.accessions(part), gsd.sequences(part), gsd.accessions("train"),
                          gsd.sequences("train"), threads=threads)


def run_baselines(gsd: GOSplitData, part: str = "test", threads: int | None = None,
                  say: Any = None) -> dict[str, Any]:
    """Term frequency, DIAMOND transfer, DIAMOND blended with frequency (alpha chosen by Fmax on valid).

    Returns ``{"metrics": {method: {ontology: metrics}}, "alpha": {ontology: alpha}, "coverage":
    share of ``part`` proteins with any DIAMOND hit, "scores": {method: {ontology: matrix}}, ...}``.
    """
    log = say if callable(say) else (lambda msg: None)
    t = time.perf_counter()
    hits = {p: diamond_hits(gsd, p, threads) for p in ("valid", part)}
    log(f"DIAMOND: {time.perf_counter() - t:.0f} s")
    present = {p: bl.has_hit(hits[p], len(gsd.rows[p])) for p in hits}
    metrics: dict[str, dict[str, dict[str, float]]] = {"frequency": {}, "diamond": {}, "diamond+frequency": {}}
    scores: dict[str, dict[str, np.ndarray]] = {k: {} for k in metrics}
    alpha: dict[str, float] = {}
    for o in gsd.ontologies:
        y = gsd.truth[o]["train"]
        freq = {p: bl.term_frequency_scores(y, len(gsd.rows[p])) for p in hits}
        dia = {p: bl.diamond_transfer_scores(hits[p], y, len(gsd.rows[p])) for p in hits}

        def fmax_valid(s: np.ndarray, o: str = o) -> float:
            return evaluate_scores(gsd, o, "valid", s, fmax_only=True)["fmax"]

        alpha[o], _ = bl.choose_alpha(fmax_valid, dia["valid"], freq["valid"], present["valid"])
        blended = bl.blend(dia[part], freq[part], alpha[o], present[part])
        for name, s in (("frequency", freq[part]), ("diamond", dia[part]), ("diamond+frequency", blended)):
            metrics[name][o] = evaluate_scores(gsd, o, part, s)
            scores[name][o] = s
        log(f"{o}: " + ", ".join(f"{k} Fmax {metrics[k][o]['fmax']:.3f} MRR {metrics[k][o]['mrr']:.3f}"
                                 for k in metrics) + f" (alpha {alpha[o]})")
    return {"metrics": metrics, "alpha": alpha, "coverage": float(present[part].mean()), "scores": scores,
            "hits": hits, "present": present}
