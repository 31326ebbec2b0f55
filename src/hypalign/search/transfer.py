"""Nearest-neighbour label transfer in any geometry: a query's labels are the distance-weighted vote of its nearest
reference items (exact search in the embedding's own geometry, :func:`hypalign.search.knn`), blended with a model's
own scores. ProtCLIP uses it to transfer GO terms from the training proteins; any recipe with labelled reference
items can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hypalign.eval.baselines import blend, choose_alpha, embedding_transfer_scores

#: temperatures tried for the embedding transfer (geometry's distance units), chosen on valid
TRANSFER_TAUS = (0.01, 0.03, 0.1, 0.3, 1.0)
#: neighbour counts tried (up to the configured ``transfer_k``), chosen on valid
TRANSFER_KS = (25, 50, 100, 200)


@dataclass
class TransferReference:
    """The training proteins in the model's search space (``model.search_geometry``: the GO space, or the unit
    sphere of a separate homology head), for nearest-neighbour GO transfer at prediction time.

    A query's transfer scores are the ``softmax(-d / tau)``-weighted vote of the (propagated) annotations
    of its ``ks[ontology]`` (at most ``k``) nearest training proteins
    (:func:`hypalign.eval.baselines.embedding_transfer_scores`; exact search by :func:`hypalign.search.knn`
    in the model's geometry). The model's GO scores are ``alpha * transfer + (1 - alpha) * term scores``;
    the neighbour count, ``tau`` and ``alpha`` are chosen per ontology by Fmax on the validation proteins
    (:func:`fit_transfer`). Works in any geometry (exact search). Saved next to the model as
    ``transfer.safetensors`` (embeddings, CSR label matrices) + ``transfer.json``."""

    embeddings: torch.Tensor
    labels: dict[str, Any]  # ontology -> scipy CSR (train proteins x terms)
    k: int = 50
    tau: dict[str, float] = field(default_factory=dict)
    alpha: dict[str, float] = field(default_factory=dict)
    ks: dict[str, int] = field(default_factory=dict)  # neighbours used per ontology (default: k)

    def neighbours(self, p: torch.Tensor, geometry: Any) -> tuple[np.ndarray, np.ndarray]:
        from hypalign.search import knn

        d, i = knn(p, self.embeddings, geometry, min(self.k, len(self.embeddings)))
        return d.numpy(), i.numpy()

    def transfer(self, p: torch.Tensor, geometry: Any, ontologies: tuple[str, ...]) -> dict[str, np.ndarray]:
        d, i = self.neighbours(p, geometry)
        return {o: embedding_transfer_scores(d[:, : self.ks.get(o, self.k)], i[:, : self.ks.get(o, self.k)],
                                                self.labels[o], self.tau[o]) for o in ontologies}

    def combine(self, terms: dict[str, np.ndarray], transfer: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {o: blend(transfer[o], terms[o], self.alpha[o]) for o in terms}

    def combine_parts(self, emb: dict[str, torch.Tensor], terms: dict[str, dict[str, np.ndarray]],
                      geometry: Any) -> dict[str, dict[str, np.ndarray]]:
        """:meth:`combine` for several parts: ``{part: {ontology: scores}}`` from embeddings and term scores."""
        return {p: self.combine(terms[p], self.transfer(emb[p], geometry, tuple(terms[p]))) for p in emb}

    def save(self, directory: Any) -> None:
        import json
        from pathlib import Path

        from safetensors.torch import save_file

        from hypalign.io import atomic_write, atomic_write_text

        tensors = {"embeddings": self.embeddings.float().contiguous()}
        for o, y in self.labels.items():
            tensors[f"{o}.indptr"] = torch.from_numpy(np.asarray(y.indptr, np.int64))
            tensors[f"{o}.indices"] = torch.from_numpy(np.asarray(y.indices, np.int64))
            tensors[f"{o}.shape"] = torch.tensor(y.shape, dtype=torch.int64)
        directory = Path(directory)
        atomic_write(directory / "transfer.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        atomic_write_text(directory / "transfer.json", json.dumps(
            {"k": self.k, "ks": self.ks, "tau": self.tau, "alpha": self.alpha, "ontologies": list(self.labels)},
            indent=2))

    @classmethod
    def load(cls, directory: Any) -> TransferReference | None:
        """The reference saved in ``directory``, or None when the run has none (term scores alone)."""
        import json
        from pathlib import Path

        import scipy.sparse as sp
        from safetensors.torch import load_file

        from hypalign.errors import InputError

        directory = Path(directory)
        if not (directory / "transfer.json").is_file():
            return None
        from safetensors import SafetensorError

        try:
            meta = json.loads((directory / "transfer.json").read_text())
            t = load_file(str(directory / "transfer.safetensors"))
            labels = {}
            for o in meta["ontologies"]:
                indptr, indices = t[f"{o}.indptr"].numpy(), t[f"{o}.indices"].numpy()
                shape = tuple(t[f"{o}.shape"].tolist())
                labels[o] = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=shape)
            return cls(t["embeddings"], labels, int(meta["k"]), {o: float(v) for o, v in meta["tau"].items()},
                       {o: float(v) for o, v in meta["alpha"].items()},
                       {o: int(v) for o, v in meta.get("ks", {}).items()})
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise InputError(f"{directory}/transfer.*: unreadable nearest-neighbour reference ({e})") from e


def fit_transfer(reference: torch.Tensor, labels: dict[str, Any], valid_embeddings: torch.Tensor,
                 valid_scores: dict[str, np.ndarray], geometry: Any, fmax_valid: Callable[[str, np.ndarray], float],
                 k: int = 200, say: Any = None) -> TransferReference:
    """Choose, per label set (ontology), the neighbour count (:data:`TRANSFER_KS`, at most ``k``) with ``tau``
    (:data:`TRANSFER_TAUS`), then ``alpha``, by ``fmax_valid(ontology, scores)`` on validation items.

    ``reference``: the reference items' embeddings in ``geometry``; ``labels``: ``{ontology: CSR (reference items
    x labels)}``; ``valid_embeddings``: the validation items in ``geometry``; ``valid_scores``: the model's own
    scores of them (``{ontology: (items x labels)}``) that the transfer is blended with."""
    log = say if callable(say) else (lambda msg: None)
    t0 = time.perf_counter()
    ref = TransferReference(reference, labels, k)
    d, i = ref.neighbours(valid_embeddings, geometry)
    counts = sorted({min(x, d.shape[1]) for x in TRANSFER_KS})
    for o in labels:
        best: tuple[float, int, float, np.ndarray] | None = None
        for kk in counts:
            for tau in TRANSFER_TAUS:
                sc = embedding_transfer_scores(d[:, :kk], i[:, :kk], ref.labels[o], tau)
                v = fmax_valid(o, sc)
                if best is None or v > best[0]:
                    best = (v, kk, tau, sc)
        assert best is not None
        _, ref.ks[o], ref.tau[o], transfer = best
        ref.alpha[o], _ = choose_alpha(lambda s, o=o: fmax_valid(o, s), transfer, valid_scores[o])
    log(f"nearest-neighbour transfer: k {ref.ks}, tau {ref.tau}, alpha {ref.alpha} "
        f"({time.perf_counter() - t0:.0f} s)")
    return ref
