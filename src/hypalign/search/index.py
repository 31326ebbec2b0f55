"""Index directories: a gallery of embeddings with its geometry, searchable from disk.

Layout of ``DIR``::

    index.json     {"format": "hypalign-index", "version": 1, "geometry", "c", "dim", "count", "hnsw"}
    vectors.npy    the gallery points (float32; float64 for hyperbolic points beyond geodesic radius 12/sqrt(c),
                   which float32 cannot hold apart; sphere points normalised)
    ids.txt        one id per row (row numbers when none were given)
    hnsw.faiss     optional HNSW graph (``hnsw=True``)

Every file is written atomically; ``index.json`` last, so a directory with an ``index.json`` is
complete. Opening an index with another geometry or dimension, or searching it with points that
are not on its manifold, raises :class:`~hypalign.errors.InputError`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hypalign.errors import InputError
from hypalign.geometry import GEOMETRIES, POINCARE_MAX_RADIUS, Manifold, get_geometry
from hypalign.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_embeddings,
    check_on_manifold,
    save_npy,
)

FORMAT = "hypalign-index"
VERSION = 1


@dataclass
class IndexMeta:
    geometry: str
    c: float | None
    dim: int
    count: int
    hnsw: bool = False
    format: str = FORMAT
    version: int = VERSION


def _geometry(name: str, c: float | None) -> Manifold:
    return get_geometry(name, c=c if c is not None else 1.0)


def _needs_float64(x: np.ndarray, geometry: str, c: float) -> bool:
    """Whether float32 would lose the points: hyperbolic points beyond geodesic radius
    ``POINCARE_MAX_RADIUS[float32] / sqrt(c)`` (deep levels of a float64 hierarchy embedding; float32 rounds
    Poincaré ones onto the boundary)."""
    sc_norm = math.sqrt(c) * float(np.sqrt((x * x).sum(1)).max())
    limit = POINCARE_MAX_RADIUS[torch.float32]
    if geometry == "poincare":
        return 2 * math.atanh(min(sc_norm, 1 - 1e-16)) > limit
    if geometry == "lorentz":
        return math.asinh(sc_norm) > limit
    return False


def build_index(
    embeddings: np.ndarray,
    geometry: str,
    out_dir: str | os.PathLike[str],
    c: float | None = 1.0,
    ids: list[str] | None = None,
    hnsw: bool = False,
    source: str = "embeddings",
) -> IndexMeta:
    """Validate ``embeddings`` as points of ``geometry`` and write an index directory."""
    if geometry not in GEOMETRIES:
        raise InputError(f"unknown geometry {geometry!r}; expected one of {', '.join(GEOMETRIES)}")
    curved = geometry in ("poincare", "lorentz")
    c = 1.0 if c is None else c  # the library's default curvature everywhere
    if curved and not (math.isfinite(c) and c > 0):
        raise InputError(f"geometry {geometry} needs a curvature --c > 0, got {c}")
    x = check_embeddings(embeddings, source)
    check_on_manifold(x, geometry, c or 1.0, source)
    if geometry == "sphere":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if ids is not None and len(ids) != len(x):
        raise InputError(f"{len(ids)} ids for {len(x)} embeddings; expected one id per row")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vectors = x if _needs_float64(x, geometry, c or 1.0) else x.astype(np.float32)
    save_npy(out / "vectors.npy", vectors)
    atomic_write_text(out / "ids.txt", "\n".join(ids if ids is not None else map(str, range(len(x)))) + "\n")
    if hnsw:
        import faiss

        from hypalign.search.hnsw import HNSWIndex

        graph = HNSWIndex(torch.from_numpy(vectors), _geometry(geometry, c))
        atomic_write(out / "hnsw.faiss", lambda p: faiss.write_index(graph.index, str(p)))
    meta = IndexMeta(geometry, float(c) if curved else None, int(x.shape[1]), int(x.shape[0]), hnsw)
    atomic_write_json(out / "index.json", asdict(meta))
    return meta


class SearchIndex:
    """An opened index directory."""

    def __init__(self, directory: str | os.PathLike[str], meta: IndexMeta, vectors: np.ndarray, ids: list[str]):
        self.directory = Path(directory)
        self.meta = meta
        self.vectors = torch.from_numpy(vectors)
        self.ids = ids
        self.geometry = _geometry(meta.geometry, meta.c)

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], geometry: str | None = None, dim: int | None = None
    ) -> SearchIndex:
        d = Path(directory)
        meta_path = d / "index.json"
        if not meta_path.exists():
            raise InputError(f"{d}: not a hypalign index (no index.json); build one with `hypalign index build`")
        try:
            raw = json.loads(meta_path.read_text())
            meta = IndexMeta(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"{meta_path}: unreadable index metadata ({exc})") from exc
        if meta.format != FORMAT or meta.version != VERSION:
            raise InputError(f"{meta_path}: format {meta.format!r} version {meta.version}, expected {FORMAT} {VERSION}")
        if geometry is not None and geometry != meta.geometry:
            raise InputError(f"{d}: index was built for geometry {meta.geometry!r}, not {geometry!r}")
        if dim is not None and dim != meta.dim:
            raise InputError(f"{d}: index has dimension {meta.dim}, queries have {dim}")
        vectors = np.load(d / "vectors.npy", allow_pickle=False)
        ids = (d / "ids.txt").read_text(encoding="utf-8").splitlines()
        if vectors.shape != (meta.count, meta.dim) or len(ids) != meta.count:
            raise InputError(f"{d}: files disagree with index.json (count {meta.count}, dim {meta.dim})")
        return cls(d, meta, vectors, ids)

    def search(
        self, queries: np.ndarray, k: int = 10, approximate: bool = False, source: str = "queries"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, row indices)`` of the ``k`` nearest gallery points of each query."""
        q = check_embeddings(queries, source)
        if q.shape[1] != self.meta.dim:
            raise InputError(f"{source}: queries have dimension {q.shape[1]}, the index has {self.meta.dim}")
        check_on_manifold(q, self.meta.geometry, self.meta.c or 1.0, source)
        qt = torch.from_numpy(q.astype(self.vectors.numpy().dtype))  # float64 indexes search in float64
        k = min(k, self.meta.count)
        if approximate:
            if not self.meta.hnsw:
                raise InputError(f"{self.directory}: built without --hnsw; rebuild it to search approximately")
            import faiss

            from hypalign.search.hnsw import HNSWIndex

            graph = HNSWIndex.from_faiss(
                faiss.read_index(str(self.directory / "hnsw.faiss")), self.vectors, self.geometry
            )
            dist, idx = graph.search(qt, k)
        else:
            from hypalign.search.exact import knn

            dist, idx = knn(qt, self.vectors, self.geometry, k)
        return dist.numpy(), idx.numpy()
