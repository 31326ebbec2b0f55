"""Where a hierarchy comes from, and the views of it that training and evaluation use: sources by name
(``wordnet:nouns``, ``wordnet:<synset>``, ``go:BP|MF|CC``, ``file:<edges.tsv>``), the transitive reduction, held-out
link-prediction edges and the closure as a CSR table."""

from __future__ import annotations

import numpy as np

from hypalign.data.go import go_hierarchy
from hypalign.data.hierarchy import Hierarchy, read_edge_list, wordnet_noun_hierarchy
from hypalign.errors import InputError


def load_source(source: str, drop_invalid: bool = False) -> Hierarchy:
    """``wordnet:nouns``, ``wordnet:<synset>``, ``go:<BP|MF|CC>``, ``go:<BP|MF|CC>:<GO id>`` (the term and its
    descendants, e.g. ``go:MF:GO:0016787``) or ``file:<path>``."""
    kind, _, arg = source.partition(":")
    if not arg:
        raise InputError(f"source {source!r}: expected wordnet:nouns, wordnet:<synset>, go:BP|MF|CC[:<GO id>] or "
                         "file:<path>")
    if kind == "wordnet":
        h = wordnet_noun_hierarchy()
        return h if arg == "nouns" else h.subtree(arg)
    if kind == "go":
        namespace, _, term = arg.partition(":")
        h = go_hierarchy(namespace)
        return h.subtree(term) if term else h
    if kind == "file":
        return read_edge_list(arg, drop_invalid=drop_invalid)
    raise InputError(f"source {source!r}: unknown kind {kind!r}; expected wordnet, go or file")


def transitive_reduction(h: Hierarchy, ancestors: list[np.ndarray] | None = None) -> np.ndarray:
    """Direct edges ``(child, parent)`` not implied by another path (the Hasse diagram)."""
    anc = ancestors if ancestors is not None else h.ancestors()
    parents = h.parents()
    keep = []
    for c, ps in enumerate(parents):
        for p in ps:
            if not any(q != p and p in set(anc[q].tolist()) for q in ps):
                keep.append((c, p))
    return np.asarray(sorted(set(keep)), dtype=np.int64).reshape(-1, 2)


def split_link_prediction(
    h: Hierarchy, fraction: float, seed: int = 0, ancestors: list[np.ndarray] | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Hold out ``fraction`` of the transitive-reduction edges.

    Returns the training ancestors of every node (the full closure minus the held-out pairs: the
    other ancestors stay, so a held-out parent has to be inferred from the rest of the
    hierarchy) and the held-out ``(child, parent)`` pairs.
    """
    anc = ancestors if ancestors is not None else h.ancestors()
    red = transitive_reduction(h, anc)
    rng = np.random.default_rng(seed)
    n_test = round(fraction * len(red))
    test = red[np.sort(rng.choice(len(red), size=n_test, replace=False))] if n_test else red[:0]
    held: dict[int, set[int]] = {}
    for c, p in test.tolist():
        held.setdefault(c, set()).add(p)
    train = [a if v not in held else np.asarray([x for x in a.tolist() if x not in held[v]], dtype=np.int64)
             for v, a in enumerate(anc)]
    return train, test


def closure_csr(ancestors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` of every node's ancestors (a CSR table of the closure)."""
    indptr = np.zeros(len(ancestors) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(a) for a in ancestors])
    indices = np.concatenate(ancestors).astype(np.int64) if indptr[-1] else np.zeros(0, dtype=np.int64)
    return indptr, indices
