"""A protein split joined with its GO annotations: per-ontology label matrices (annotations propagated to ancestors,
the true-path rule; a protein without annotations in an ontology has an empty row there) and each held-out protein's
most specific terms — the ground truth every GO evaluator and
baseline reads (:func:`hypalign.eval.function.evaluate_scores`, :func:`hypalign.eval.baselines.run_baselines`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hypalign.data.go import Ontology
from hypalign.data.protein import ONTOLOGIES, GODataset, metastudent_go_dataset
from hypalign.data.splits import PARTS, Split, load_split


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

    def annotated(self, ontology: str, part: str) -> np.ndarray:
        """``(proteins of part,)`` bool: which proteins have any annotation in ``ontology`` (the others are unknown
        there, not negative: CAFA evaluates each ontology on the proteins annotated in it)."""
        y = self.truth[ontology][part]
        return np.diff(y.indptr) > 0 if hasattr(y, "indptr") else np.asarray(y).any(1)


def prepare_go_split(split: str | Split, data: GODataset | None = None, seed: int = 0,
                     ontologies: tuple[str, ...] = ONTOLOGIES) -> GOSplitData:
    """Load the split (name or directory) and build label matrices for each ontology.

    The default data are every Swiss-Prot protein of metastudent-data annotated in *any* ontology (516,371): a
    split may hold proteins annotated in some of BP / MF / CC only; each ontology's labels are then unknown (an
    empty row, not negatives) for the others — training masks them, evaluation and the baselines leave them out."""
    import scipy.sparse as sp

    sp_ = split if isinstance(split, Split) else load_split(split, seed=seed)
    data = data if data is not None else metastudent_go_dataset(require_all=False)
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
