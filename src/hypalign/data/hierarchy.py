"""Hierarchies (directed acyclic "is-a" graphs) and their transitive closures.

Sources:

* WordNet 3.0 nouns (Debian ``wordnet-base``), read from the documented database files
  (:mod:`hypalign.data.wordnet`): edges are hypernym (``@``) and instance-hypernym (``@i``)
  pointers; nodes are named as nltk names synsets (``mammal.n.01``: the synset's first lemma,
  lower-cased, and its sense number in ``index.noun``).
* The Gene Ontology shipped in Debian ``metastudent-data`` (``goGraph.txt``: parent, child, 1,
  relation): ``is_a`` and ``part_of`` edges, one namespace (BP, MF, CC) at a time.
* An edge list a user brings: ``child<TAB or comma>parent[<sep>relation]`` per line.

The closure of a hierarchy is every (node, ancestor) pair, what Poincaré embeddings are trained
and evaluated on (Nickel & Kiela 2017).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hypalign.errors import InputError

DEFAULT_RELATIONS = ("is_a", "part_of", "hypernym", "instance_hypernym")


@dataclass
class Hierarchy:
    """Nodes and direct ``(child, parent)`` edges of a DAG; ``edges`` indexes ``names``."""

    names: list[str]
    edges: np.ndarray  # (E, 2) int64: child, parent
    labels: dict[str, str] = field(default_factory=dict)  # optional human-readable text per name

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        self.index = {n: i for i, n in enumerate(self.names)}

    @property
    def n_nodes(self) -> int:
        return len(self.names)

    def parents(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.names]
        for c, p in self.edges.tolist():
            out[c].append(p)
        return out

    def topological_order(self) -> list[int]:
        """Nodes with every parent before its children; :class:`InputError` names a cycle if there is one."""
        parents = self.parents()
        children: list[list[int]] = [[] for _ in self.names]
        indeg = [len(p) for p in parents]
        for c, ps in enumerate(parents):
            for p in ps:
                children[p].append(c)
        order = [v for v in range(self.n_nodes) if indeg[v] == 0]
        for v in order:  # grows while iterating
            for ch in children[v]:
                indeg[ch] -= 1
                if indeg[ch] == 0:
                    order.append(ch)
        if len(order) != self.n_nodes:
            cycle = _find_cycle(parents, {v for v in range(self.n_nodes) if indeg[v] > 0})
            raise InputError("the hierarchy has a cycle: " + " -> ".join(self.names[v] for v in cycle))
        return order

    def ancestors(self) -> list[np.ndarray]:
        """Sorted ancestor indices of every node (transitively; not the node itself)."""
        parents = self.parents()
        anc: list[set[int]] = [set() for _ in self.names]
        for v in self.topological_order():
            for p in parents[v]:
                anc[v].add(p)
                anc[v] |= anc[p]
        return [np.fromiter(sorted(a), dtype=np.int64, count=len(a)) for a in anc]

    def closure(self) -> np.ndarray:
        """All ``(node, ancestor)`` pairs, shape ``(C, 2)``."""
        anc = self.ancestors()
        rows = [np.column_stack([np.full(len(a), v, dtype=np.int64), a]) for v, a in enumerate(anc) if len(a)]
        return np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)

    def subtree(self, root: str) -> Hierarchy:
        """``root`` and all its descendants, with the edges among them."""
        if root not in self.index:
            raise InputError(f"unknown node {root!r}")
        r = self.index[root]
        anc = self.ancestors()
        keep = [v for v in range(self.n_nodes) if v == r or r in set(anc[v].tolist())]
        remap = {v: i for i, v in enumerate(keep)}
        edges = [(remap[c], remap[p]) for c, p in self.edges.tolist() if c in remap and p in remap]
        names = [self.names[v] for v in keep]
        return Hierarchy(
            names, np.asarray(edges, dtype=np.int64), {n: self.labels[n] for n in names if n in self.labels}
        )


def _find_cycle(parents: list[list[int]], candidates: set[int]) -> list[int]:
    """A cycle among ``candidates`` (nodes left after Kahn's algorithm), as a node path."""
    start = min(candidates)
    seen: dict[int, int] = {}
    path: list[int] = []
    v = start
    while v not in seen:
        seen[v] = len(path)
        path.append(v)
        v = next(p for p in parents[v] if p in candidates)
    return [*path[seen[v] :], v]


# ---- WordNet ---------------------------------------------------------------------------------------
def wordnet_sense_names(directory: str | os.PathLike[str] | None = None, pos: str = "noun") -> dict[int, str]:
    """``{synset offset: nltk-style name}`` from ``data.<pos>`` and ``index.<pos>``."""
    from hypalign.data.wordnet import iter_synsets, wordnet_dir

    d = Path(directory or wordnet_dir())
    senses: dict[str, list[int]] = {}
    with open(d / f"index.{pos}", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            tok = line.split()
            p_cnt = int(tok[3])
            synset_cnt = int(tok[2])
            offsets = tok[4 + p_cnt + 2 : 4 + p_cnt + 2 + synset_cnt]
            senses[tok[0]] = [int(o) for o in offsets]
    letter = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}[pos]
    names = {}
    for s in iter_synsets(pos, d):
        lemma = s.words[0].replace(" ", "_").lower()
        names[s.offset] = f"{lemma}.{letter}.{senses[lemma].index(s.offset) + 1:02d}"
    return names


def wordnet_noun_hierarchy(directory: str | os.PathLike[str] | None = None) -> Hierarchy:
    """All WordNet 3.0 noun synsets; edges = hypernym and instance-hypernym pointers."""
    from hypalign.data.wordnet import iter_synsets

    synsets = list(iter_synsets("noun", directory))
    names_by_offset = wordnet_sense_names(directory)
    offsets = [s.offset for s in synsets]
    index = {o: i for i, o in enumerate(offsets)}
    edges = [
        (index[s.offset], index[t]) for s in synsets for sym, t, pos in s.pointers if sym in ("@", "@i") and pos == "n"
    ]
    names = [names_by_offset[o] for o in offsets]
    labels = {names_by_offset[s.offset]: s.gloss for s in synsets}
    return Hierarchy(names, np.asarray(edges, dtype=np.int64), labels)


# ---- edge lists ---------------------------------------------------------------------------------------
def from_pairs(pairs: Iterable[tuple[str, str]]) -> Hierarchy:
    names: list[str] = []
    index: dict[str, int] = {}
    edges = set()
    for child, parent in pairs:
        for n in (child, parent):
            if n not in index:
                index[n] = len(names)
                names.append(n)
        edges.add((index[child], index[parent]))
    return Hierarchy(names, np.asarray(sorted(edges), dtype=np.int64))


def read_edge_list(
    path: str | os.PathLike[str],
    relations: Sequence[str] = DEFAULT_RELATIONS,
    drop_invalid: bool = False,
) -> Hierarchy:
    """Read ``child,parent[,relation]`` lines (tab- or comma-separated; ``#`` comments and a
    ``child,parent`` header allowed).

    Malformed lines, self-loops, unknown relation types and edges that close a cycle are errors
    naming the line; with ``drop_invalid=True`` they are dropped and counted in one warning.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    dropped: dict[str, int] = {}

    def bad(lineno: int, why: str) -> None:
        if not drop_invalid:
            raise InputError(f"{p}: line {lineno}: {why}")
        dropped[why.split(":")[0]] = dropped.get(why.split(":")[0], 0) + 1

    pairs: list[tuple[str, str, int]] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            tok = [t.strip() for t in (line.split("\t") if "\t" in line else line.split(","))]
            if lineno == 1 and [t.lower() for t in tok[:2]] == ["child", "parent"]:
                continue
            if len(tok) not in (2, 3) or not tok[0] or not tok[1]:
                bad(lineno, f"malformed line: expected 'child,parent[,relation]', got {line[:80]!r}")
                continue
            if len(tok) == 3 and tok[2] not in relations:
                bad(lineno, f"unknown relation type: {tok[2]!r} (expected one of {', '.join(relations)})")
                continue
            if tok[0] == tok[1]:
                bad(lineno, f"self-loop: {tok[0]!r} is its own parent")
                continue
            pairs.append((tok[0], tok[1], lineno))
    if not pairs:
        raise InputError(f"{p}: no edges")
    # add edges one by one, refusing any that would close a cycle (reachability check)
    names: list[str] = []
    index: dict[str, int] = {}
    parents: list[set[int]] = []
    kept: list[tuple[int, int]] = []
    for child, parent, lineno in pairs:
        for n in (child, parent):
            if n not in index:
                index[n] = len(names)
                names.append(n)
                parents.append(set())
        c, par = index[child], index[parent]
        if par in parents[c]:
            continue  # duplicate edge
        if _reaches(parents, par, c):
            bad(lineno, f"cycle: the edge {child} -> {parent} closes a cycle")
            continue
        parents[c].add(par)
        kept.append((c, par))
    if dropped:
        summary = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items()))
        warnings.warn(f"{p}: dropped {sum(dropped.values())} lines ({summary})", stacklevel=2)
    return Hierarchy(names, np.asarray(kept, dtype=np.int64))


def _reaches(parents: list[set[int]], start: int, target: int) -> bool:
    """Is ``target`` an ancestor-or-self of ``start``?"""
    stack, seen = [start], {start}
    while stack:
        v = stack.pop()
        if v == target:
            return True
        for p in parents[v]:
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return False
