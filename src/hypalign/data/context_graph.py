"""A context graph for InfoAlign (spec §4.1): typed nodes (molecules with SMILES, protein targets, GO terms,
pathways, drug classes, ChEBI roles, or a user's own: gene perturbations, cell-morphology and expression profiles),
weighted undirected edges, and optional numeric profiles per node — what the random walks of pre-training start
from (molecules) and reach (context).

**File format** (a directory; :func:`read_context_graph`, :func:`write_context_graph`), tab-separated, one header
line each, ``#`` comment lines allowed:

* ``nodes.tsv``: ``id  type  smiles`` — a unique id, a type name (any; ``molecule`` nodes need a SMILES, the other
  types leave it empty).
* ``edges.tsv``: ``source  target  weight`` — two node ids and a finite weight >= 0 (empty: 1). Undirected; a pair
  listed twice keeps the larger weight; self-loops are dropped.
* ``profiles/NAME.tsv`` (optional, any number): ``id  f1  f2 …`` — a numeric vector per node (a Cell Painting
  profile, L1000 signature, CRISPR/ORF features …), the target a decoder of that profile predicts for the node.
  Nodes without a row have none (NaN), as in InfoAlign. Values are min-max normalised per column when read
  (``normalise=True``), InfoAlign's soft BCE targets.

Errors name the file, the line and what was expected: an edge naming an unknown node, a negative or non-numeric
weight, a repeated node id, a molecule without a parsable SMILES (or ``skip_invalid``: dropped with its edges and
counted), an empty graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign.errors import InputError

MOLECULE = "molecule"


@dataclass
class ContextGraph:
    """Nodes ``ids[i]`` of type ``type_names[types[i]]``; undirected edges ``(src[e], dst[e])`` with ``weight[e]``
    (each pair once); ``smiles`` of the molecule nodes (``{node: SMILES}``); ``profiles[name] = (nodes, values)``:
    the node indices that have the profile and their ``(len(nodes), dims)`` float32 values."""

    ids: list[str]
    types: np.ndarray
    type_names: list[str]
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    smiles: dict[int, str] = field(default_factory=dict)
    profiles: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    skipped: int = 0

    def __post_init__(self) -> None:
        self.index = {a: i for i, a in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def nodes_of(self, type_name: str) -> np.ndarray:
        """Indices of the nodes of one type (empty when the graph has none)."""
        if type_name not in self.type_names:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.types == self.type_names.index(type_name))

    def counts(self) -> dict[str, Any]:
        """Nodes per type and edges per (type, type) pair — what the docs record."""
        nodes = {t: int((self.types == k).sum()) for k, t in enumerate(self.type_names)}
        pairs: dict[str, int] = {}
        a, b = self.types[self.src], self.types[self.dst]
        for x, y in zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True):
            key = f"{self.type_names[x]}-{self.type_names[y]}"
            pairs[key] = pairs.get(key, 0) + 1
        return {"nodes": nodes, "edges": dict(sorted(pairs.items()))}

    def adjacency(self, keep: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CSR over both directions: ``(indptr (n + 1,), neighbours, weights)``, neighbours sorted per node;
        ``keep`` (bool per edge): only those edges (e.g. without the held-out molecules')."""
        src, dst, wt = (self.src, self.dst, self.weight) if keep is None else (self.src[keep], self.dst[keep],
                                                                              self.weight[keep])
        s = np.concatenate([src, dst])
        d = np.concatenate([dst, src])
        w = np.concatenate([wt, wt])
        order = np.lexsort((d, s))
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.add.at(indptr, s + 1, 1)
        return (torch.from_numpy(np.cumsum(indptr)), torch.from_numpy(d[order].astype(np.int64)),
                torch.from_numpy(w[order].astype(np.float32)))


def build_graph(ids: list[str], types: list[str], edges: list[tuple[str, str, float]],
                smiles: dict[str, str] | None = None,
                profiles: dict[str, tuple[list[str], np.ndarray]] | None = None) -> ContextGraph:
    """A :class:`ContextGraph` from ids, type names, ``(source, target, weight)`` triples (unknown ids, negative or
    non-finite weights: errors; a repeated pair keeps its largest weight; self-loops dropped), SMILES by id and
    profiles by name as ``(ids, values)``."""
    if not ids:
        raise InputError("context graph: no nodes")
    index: dict[str, int] = {}
    for i, a in enumerate(ids):
        if a in index:
            raise InputError(f"context graph: node id {a!r} given twice")
        index[a] = i
    names = sorted(set(types))
    tcode = np.array([names.index(t) for t in types], dtype=np.int64)
    best: dict[tuple[int, int], float] = {}
    for a, b, w in edges:
        if a not in index or b not in index:
            raise InputError(f"context graph: edge ({a}, {b}) names an unknown node {a if a not in index else b!r}")
        if not np.isfinite(w) or w < 0:
            raise InputError(f"context graph: edge ({a}, {b}) has weight {w}; expected a finite number >= 0")
        i, j = index[a], index[b]
        if i == j:
            continue
        key = (min(i, j), max(i, j))
        best[key] = max(best.get(key, 0.0), float(w))
    if not best:
        raise InputError("context graph: no edges (a walk from a molecule would reach no context)")
    pairs = np.array(sorted(best), dtype=np.int64)
    weight = np.array([best[(int(i), int(j))] for i, j in pairs], dtype=np.float32)
    prof = {}
    for name, (pids, values) in (profiles or {}).items():
        unknown = [x for x in pids if x not in index]
        if unknown:
            raise InputError(f"context graph: profile {name!r} names an unknown node {unknown[0]!r}")
        prof[name] = (np.array([index[x] for x in pids], dtype=np.int64), np.asarray(values, dtype=np.float32))
    return ContextGraph(list(ids), tcode, names, pairs[:, 0].copy(), pairs[:, 1].copy(), weight,
                        {index[k]: v for k, v in (smiles or {}).items()}, prof)


def _rows(path: Path, want: tuple[str, ...], required: int) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` of a TSV with a header naming ``want`` (the first ``required`` must be present)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    out: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            f = [x.strip() for x in line.split("\t")]
            if header is None:
                header = [x.lower() for x in f]
                if [h for h in header[:required]] != list(want[:required]):
                    raise InputError(f"{path}: line {lineno}: expected a tab-separated header starting with "
                                     f"{', '.join(want[:required])}; got {', '.join(f)[:80]}")
                continue
            if len(f) < required:
                raise InputError(f"{path}: line {lineno}: expected {required} tab-separated fields "
                                 f"({', '.join(want[:required])}), got {len(f)}")
            out.append((lineno, f))
    if header is None:
        raise InputError(f"{path}: empty file (expected a tab-separated header {', '.join(want)})")
    return out


def read_context_graph(path: str | os.PathLike[str], skip_invalid: bool = False,
                       normalise: bool = True) -> ContextGraph:
    """Read the directory format of the module docstring (errors name file and line)."""
    from hypalign.data.molecules import parse_smiles

    d = Path(path)
    if not d.is_dir():
        raise InputError(f"{d}: not a context-graph directory (nodes.tsv, edges.tsv, optional profiles/)")
    node_rows = _rows(d / "nodes.tsv", ("id", "type", "smiles"), 2)
    ids, types, where = [], [], {}
    smiles: dict[str, str] = {}
    mol_rows: list[tuple[int, str, str]] = []
    for lineno, f in node_rows:
        a, t = f[0], f[1]
        if not a or not t:
            raise InputError(f"{d / 'nodes.tsv'}: line {lineno}: empty id or type")
        if a in where:
            raise InputError(f"{d / 'nodes.tsv'}: line {lineno}: node id {a!r} already given on line {where[a]}")
        where[a] = lineno
        if t == MOLECULE:
            mol_rows.append((lineno, a, f[2] if len(f) > 2 else ""))
        ids.append(a)
        types.append(t)
    if not ids:
        raise InputError(f"{d / 'nodes.tsv'}: no nodes")
    _, kept = parse_smiles([s for _, _, s in mol_rows], str(d / "nodes.tsv"), skip_invalid,
                           lines=[ln for ln, _, _ in mol_rows])
    bad = {mol_rows[i][1] for i in sorted(set(range(len(mol_rows))) - set(kept.tolist()))}
    for i in kept.tolist():
        smiles[mol_rows[i][1]] = mol_rows[i][2]
    if bad:  # dropped with their edges
        keep = [k for k, a in enumerate(ids) if a not in bad]
        ids, types = [ids[k] for k in keep], [types[k] for k in keep]
    edges = []
    known = set(ids)
    for lineno, f in _rows(d / "edges.tsv", ("source", "target", "weight"), 2):
        a, b = f[0], f[1]
        for x in (a, b):
            if x not in known and x not in bad:
                raise InputError(f"{d / 'edges.tsv'}: line {lineno}: unknown node {x!r} (not in nodes.tsv)")
        if a in bad or b in bad:
            continue
        w = 1.0
        if len(f) > 2 and f[2]:
            try:
                w = float(f[2])
            except ValueError:
                raise InputError(f"{d / 'edges.tsv'}: line {lineno}: weight {f[2][:20]!r} is not a number") from None
            if not np.isfinite(w) or w < 0:
                raise InputError(f"{d / 'edges.tsv'}: line {lineno}: weight {f[2]!r}; expected a finite number >= 0")
        edges.append((a, b, w))
    if not edges:
        raise InputError(f"{d / 'edges.tsv'}: no edges")
    profiles = {}
    pdir = d / "profiles"
    if pdir.is_dir():
        for pf in sorted(pdir.glob("*.tsv")):
            profiles[pf.stem] = _read_profile(pf, known, bad, normalise)
    g = build_graph(ids, types, edges, smiles, profiles)
    g.skipped = len(bad)
    return g


def _read_profile(path: Path, known: set[str], bad: set[str], normalise: bool) -> tuple[list[str], np.ndarray]:
    rows: list[list[float]] = []
    pids: list[str] = []
    width = None
    with open(path, encoding="utf-8") as fh:
        header = None
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            f = line.split("\t")
            if header is None:
                header = f
                if len(f) < 2 or f[0].strip().lower() != "id":
                    raise InputError(f"{path}: line {lineno}: expected a header 'id<TAB>feature…'")
                width = len(f) - 1
                continue
            if len(f) != (width or 0) + 1:
                raise InputError(f"{path}: line {lineno}: {len(f) - 1} values, the header names {width}")
            a = f[0].strip()
            if a in bad:
                continue
            if a not in known:
                raise InputError(f"{path}: line {lineno}: unknown node {a!r} (not in nodes.tsv)")
            try:
                vals = [float(x) if x.strip() else np.nan for x in f[1:]]
            except ValueError:
                raise InputError(f"{path}: line {lineno}: a value that is not a number") from None
            pids.append(a)
            rows.append(vals)
    if not rows:
        raise InputError(f"{path}: no rows")
    v = np.asarray(rows, dtype=np.float32)
    if normalise:
        lo, hi = np.nanmin(v, 0), np.nanmax(v, 0)
        v = (v - lo) / np.where(hi > lo, hi - lo, 1.0)
    return pids, v


def write_context_graph(g: ContextGraph, path: str | os.PathLike[str]) -> Path:
    """Write ``g`` in the directory format (atomically: a temporary directory renamed into place)."""
    import shutil

    d = Path(path)
    tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "profiles").mkdir(parents=True)
    with open(tmp / "nodes.tsv", "w", encoding="utf-8") as fh:
        fh.write("id\ttype\tsmiles\n")
        for i, a in enumerate(g.ids):
            fh.write(f"{a}\t{g.type_names[g.types[i]]}\t{g.smiles.get(i, '')}\n")
    with open(tmp / "edges.tsv", "w", encoding="utf-8") as fh:
        fh.write("source\ttarget\tweight\n")
        for s, t, w in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist(), strict=True):
            fh.write(f"{g.ids[s]}\t{g.ids[t]}\t{w:.6g}\n")
    for name, (nodes, values) in g.profiles.items():
        with open(tmp / "profiles" / f"{name}.tsv", "w", encoding="utf-8") as fh:
            fh.write("id\t" + "\t".join(f"f{k}" for k in range(values.shape[1])) + "\n")
            for i, row in zip(nodes.tolist(), values, strict=True):
                fh.write(g.ids[i] + "\t" + "\t".join("" if np.isnan(x) else f"{x:.6g}" for x in row) + "\n")
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)
    return d


def random_walks(indptr: torch.Tensor, neighbours: torch.Tensor, weights: torch.Tensor, starts: torch.Tensor,
                 length: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random walks (node2vec with p = q = 1: edge weights do not steer a step, InfoAlign §4.3) of ``length``
    steps from each start node, in torch (torch-cluster's ``random_walk`` does not install here).

    Returns ``(nodes, path_weight)``, both ``(len(starts), length + 1)``: ``nodes[:, 0] = starts``, ``nodes[:, k]``
    the node after step k (``-1`` once a walk is stuck on a node without neighbours), and
    ``path_weight[:, k] = Π_{j<=k} w_j`` the product of the edge weights walked so far (``1`` for the start, ``0``
    after a stuck step) — the weight of node k's context in the loss."""
    b = len(starts)
    nodes = torch.full((b, length + 1), -1, dtype=torch.long)
    pw = torch.zeros((b, length + 1), dtype=torch.float32)
    cur = starts.long().clone()
    nodes[:, 0], pw[:, 0] = cur, 1.0
    alive = torch.ones(b, dtype=torch.bool)
    w = torch.ones(b)
    for k in range(1, length + 1):
        deg = torch.where(alive, indptr[cur.clamp_min(0) + 1] - indptr[cur.clamp_min(0)], torch.zeros_like(cur))
        alive = alive & (deg > 0)
        u = torch.rand(b, generator=generator)
        pick = indptr[cur.clamp_min(0)] + (u * deg.clamp_min(1)).long().clamp(max=(deg - 1).clamp_min(0))
        nxt = torch.where(alive, neighbours[pick.clamp(max=len(neighbours) - 1)], torch.full_like(cur, -1))
        w = torch.where(alive, w * weights[pick.clamp(max=len(weights) - 1)], torch.zeros_like(w))
        nodes[:, k], pw[:, k] = nxt, w
        cur = nxt
    return nodes, pw
