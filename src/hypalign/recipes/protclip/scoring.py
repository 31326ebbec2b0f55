"""ProtCLIP scoring: the GO term axis, protein embeddings and GO scores of sequences with a trained model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hypalign.data.go import Ontology
from hypalign.data.go_split import GOSplitData


def term_table(ontologies: dict[str, Ontology], text_path: str | None = None, say: Any = None,
               model: Any = None) -> tuple[list[str], dict[str, int], torch.Tensor]:
    """The model's GO term axis: names of every term of the ontologies one after another, each ontology's
    offset on that axis, and the text features of the names: frozen (:func:`encode_cached`), or — for a
    ``model`` with a tuned text tower (``text_layers``) — through its tuned top layers
    (:meth:`~hypalign.models.protclip.ProtCLIP.tuned_text_features`)."""
    from hypalign.encoders.text import encode_cached

    onts = list(ontologies)
    names = [n for o in onts for n in ontologies[o].names]
    offset = dict(zip(onts, np.cumsum([0] + [len(ontologies[o]) for o in onts[:-1]]).tolist(), strict=True))
    if model is not None and hasattr(model, "text_layers"):
        from hypalign.encoders.text import token_states_cached

        saved = getattr(model, "saved_term_features", None)  # saved with the model (ProtCLIP.from_pretrained)
        if saved is not None and saved[0] == model.tuned_terms_fingerprint(names):
            return names, offset, saved[1]
        states, offsets = token_states_cached(names, text_path, model.text_layers.n_layers, say=say)
        return names, offset, model.tuned_text_features(states, offsets)
    return names, offset, torch.from_numpy(encode_cached(names, text_path, say=say))


def embed_protein_spaces(model: Any, seqs: list[str], max_len: int = 1024, batch_size: int = 64,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings on the model's manifold, embeddings in its search_geometry)`` — the nearest-neighbour
    transfer searches the second; one tensor twice without a separate homology head. Through the one batched
    inference path (:func:`~hypalign.models.encode.encode_batched`), batches sorted by length (less padding)."""
    from hypalign.encoders.protein import tokenize
    from hypalign.models.encode import encode_batched
    from hypalign.train import model_device

    dev = model_device(model)
    separate = hasattr(model, "homology_proj")

    def run(batch: list[str]) -> tuple[torch.Tensor, ...]:
        ids, mask = tokenize(batch, max_len)
        a, b = model.encode_protein_search(ids.to(dev), mask.to(dev))
        return (a, b) if separate else (a,)

    if not seqs:
        raise ValueError("no sequences to embed")
    out = encode_batched(run, seqs, batch_size, sort_key=len, model=model)
    return out[0], (out[1] if separate else out[0])


def embed_proteins(model: Any, seqs: list[str], max_len: int = 1024, batch_size: int = 64) -> torch.Tensor:
    """Protein embeddings on the model's manifold (:func:`embed_protein_spaces`)."""
    return embed_protein_spaces(model, seqs, max_len, batch_size)[0]


@torch.no_grad()
def term_scores(model: Any, p: torch.Tensor, ontologies: dict[str, Ontology], term_features: torch.Tensor,
                offset: dict[str, int]) -> dict[str, np.ndarray]:
    """``{ontology: (proteins x terms)}`` ``sigmoid(term logits)`` of embedded proteins ``p``, propagated to
    ancestors (max)."""
    from hypalign.eval.function import propagate
    from hypalign.train import model_device

    dev = model_device(model)
    p, out = p.to(dev), {}
    for o, ont in ontologies.items():
        idx = torch.arange(offset[o], offset[o] + len(ont))
        t = model.encode_text(term_features[idx].to(dev))
        out[o] = propagate(torch.sigmoid(model.term_logits(p, t, idx.to(dev))).float().cpu().numpy(), ont.ancestors)
    return out


def heldout_term_scores(model: Any, gsd: GOSplitData, term_features: torch.Tensor, offset: dict[str, int],
                        max_len: int = 1024, parts: tuple[str, ...] = ("valid", "test"),
                        ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, np.ndarray]]]:
    """Each part's protein embeddings in the space the nearest-neighbour transfer searches
    (``model.search_geometry``) and term scores (:func:`term_scores`), every protein embedded once."""
    emb, terms = {}, {}
    for p in parts:
        shared, emb[p] = embed_protein_spaces(model, gsd.sequences(p), max_len)
        terms[p] = term_scores(model, shared, gsd.ontologies, term_features, offset)
    return emb, terms


@torch.no_grad()
def predict_scores(model: Any, seqs: list[str], ontologies: dict[str, Ontology], term_features: torch.Tensor,
                   offset: dict[str, int], max_len: int = 1024,
                   reference: Any = None) -> dict[str, np.ndarray]:
    """``{ontology: (proteins x terms)}`` GO scores: the term scores (:func:`term_scores`), or with a
    ``reference`` their blend with nearest-neighbour transfer in the model's space
    (:meth:`~hypalign.search.transfer.TransferReference.combine`)."""
    p, q = embed_protein_spaces(model, seqs, max_len)
    terms = term_scores(model, p, ontologies, term_features, offset)
    if reference is None:
        return terms
    return reference.combine(terms, reference.transfer(q, model.search_geometry, tuple(ontologies)))
