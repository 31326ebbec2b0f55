"""The Gene Ontology as shipped by Debian's ``metastudent-data`` (snapshot 2014-01).

Files under ``/usr/share/metastudent-data/dataset_201401/`` (override with the
``HYPALIGN_METASTUDENT_DIR`` environment variable):

* ``nameMapping.txt``: ``GO id <TAB> term name``;
* ``goGraph.txt``: ``parent <TAB> child <TAB> 1 <TAB> relation`` (is_a, part_of, regulates...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hypalign.data.hierarchy import Hierarchy, from_pairs
from hypalign.errors import InputError
from hypalign.paths import DEFAULT_METASTUDENT_DIR, metastudent_dir

__all__ = ["DEFAULT_METASTUDENT_DIR", "GO_ROOTS", "Ontology", "go_hierarchy", "metastudent_dir", "read_go_names"]

GO_ROOTS = {"BP": "GO:0008150", "MF": "GO:0003674", "CC": "GO:0005575"}

def read_go_names(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``{GO id: term name}`` from ``nameMapping.txt``; malformed lines are errors naming the line.

    Rows whose first field is not a GO id are skipped: metastudent's file carries two such
    bookkeeping rows (``obsolete_cellular_component``, ``systematic_synonym``).
    """
    p = Path(path) if path is not None else metastudent_dir() / "nameMapping.txt"
    names: dict[str, str] = {}
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) == 2 and not parts[0].startswith("GO:") and " " not in parts[0]:
                continue  # a bookkeeping row, not a term
            if len(parts) < 2 or not parts[0].startswith("GO:") or not parts[1].strip():
                raise InputError(f"{p}: line {lineno}: expected 'GO:nnnnnnn<TAB>name', got {line[:80]!r}")
            names[parts[0]] = parts[1].strip()
    if not names:
        raise InputError(f"{p}: no GO terms found")
    return names


class Ontology:
    """One GO namespace as used for function prediction: term ids, names, ancestors, label matrices.

    Built from :func:`hypalign.data.hierarchy.go_hierarchy` (is_a + part_of). Annotations are
    *propagated* (true-path rule): a protein annotated with a term carries all of its ancestors.
    The *most specific* terms of an annotation set are those with no descendant in the set.
    """

    def __init__(self, namespace: str, directory: str | os.PathLike[str] | None = None) -> None:

        self.namespace = namespace.upper()
        self.terms, self.names, self.ancestors = _load_ontology(self.namespace, directory)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.terms)}
        self.root: int = self.index[GO_ROOTS[self.namespace]]

    def __len__(self) -> int:
        return len(self.terms)

    def propagate(self, terms: list[str] | tuple[str, ...]) -> np.ndarray:
        """Sorted indices of ``terms`` (those in this namespace) and all their ancestors."""
        idx = [self.index[t] for t in terms if t in self.index]
        if not idx:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([np.asarray(idx, dtype=np.int64), *(self.ancestors[i] for i in idx)]))

    def most_specific(self, propagated: np.ndarray) -> np.ndarray:
        """Members of a propagated set that are no other member's ancestor."""
        covered: set[int] = set()
        for i in propagated.tolist():
            covered.update(self.ancestors[i].tolist())
        return np.array([i for i in propagated.tolist() if i not in covered], dtype=np.int64)

    def label_matrix(self, annotations: list[list[str]]) -> np.ndarray:
        """Propagated ``(proteins x terms)`` 0/1 matrix (uint8)."""
        y = np.zeros((len(annotations), len(self.terms)), dtype=np.uint8)
        for r, terms in enumerate(annotations):
            y[r, self.propagate(terms)] = 1
        return y


def _load_ontology(namespace: str, directory: str | os.PathLike[str] | None) -> tuple[list[str], list[str],
                                                                                   list[np.ndarray]]:
    """Terms, names and ancestor lists of a namespace, cached as ``.npz`` next to the other caches (keyed by
    the GO files' size and time stamp): building the ancestors takes ~4 s per namespace, reading ~0.1 s."""
    from hypalign.io import atomic_write
    from hypalign.paths import cache_dir

    d = Path(directory or metastudent_dir())
    stamp = "-".join(f"{(d / f).stat().st_size}_{int((d / f).stat().st_mtime)}" for f in ("goGraph.txt",
                                                                                          "nameMapping.txt"))
    cache = cache_dir() / "go" / f"{namespace}-{stamp}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        indptr, flat = z["indptr"], z["ancestors"]
        anc = [flat[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]
        return z["terms"].tolist(), z["names"].tolist(), anc
    h = go_hierarchy(namespace, directory)
    terms = list(h.names)
    names = [h.labels.get(t, t) for t in terms]
    anc = h.ancestors()
    indptr = np.cumsum([0] + [len(a) for a in anc])

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, terms=np.array(terms), names=np.array(names), indptr=indptr,
                     ancestors=np.concatenate(anc) if anc else np.zeros(0, np.int64))

    atomic_write(cache, write)
    return terms, names, anc


# ---- Gene Ontology ------------------------------------------------------------------------------------
def go_hierarchy(
    namespace: str, directory: str | os.PathLike[str] | None = None, relations: Sequence[str] = ("is_a", "part_of")
) -> Hierarchy:
    """One GO namespace (``BP``, ``MF`` or ``CC``) from metastudent-data's ``goGraph.txt``.

    A term belongs to the namespace whose root it reaches; edges crossing namespaces (a few
    ``part_of`` links) are dropped, and so are obsolete terms (filed under pseudo-parents such as
    ``obsolete_molecular_function``, which reach no root).
    """
    ns = namespace.upper()
    if ns not in GO_ROOTS:
        raise InputError(f"unknown GO namespace {namespace!r}; expected BP, MF or CC")
    d = Path(directory or metastudent_dir())
    path = d / "goGraph.txt"
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            tok = line.rstrip("\n").split("\t")
            if len(tok) == 4 and tok[0].startswith("obsolete_"):
                continue  # metastudent files obsolete terms under bookkeeping pseudo-parents
            if len(tok) != 4 or not tok[0].startswith("GO:") or not tok[1].startswith("GO:"):
                raise InputError(f"{path}: line {lineno}: expected 'parent<TAB>child<TAB>1<TAB>relation'")
            if tok[3] in relations:
                pairs.append((tok[1], tok[0]))  # (child, parent)
    full = from_pairs(pairs)
    root = GO_ROOTS[ns]
    sub = full.subtree(root)
    names = read_go_names(d / "nameMapping.txt")
    sub.labels = {n: names[n] for n in sub.names if n in names}
    return sub
