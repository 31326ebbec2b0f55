"""Approximate search for large galleries: HNSW on MIPS->L2 transformed vectors, then exact re-ranking.

Inner-product search is turned into Euclidean search with one extra coordinate (Bachrach et al.
2014): with ``M = max ||v||`` over the gallery's inner-product vectors ``v``, gallery points become
``[v, sqrt(M^2 - ||v||^2)]`` and queries ``[q, 0]``, so ``||q' - v'||^2 = ||q||^2 + M^2 - 2 q.v`` and
the L2-nearest is the inner-product-best. (Plain HNSW with inner product on hyperboloid vectors
recalls only a fraction of the true neighbours; the augmented L2 form recalls almost all.) The
``k + margin`` HNSW candidates are re-ranked with the geometry's exact distance.
"""

from __future__ import annotations

import numpy as np
import torch

from hypalign.geometry import Manifold
from hypalign.search.exact import RERANK_MARGIN, mips_vectors, rerank


def l2_augment(gallery_ip: np.ndarray) -> tuple[np.ndarray, float]:
    """``[v, sqrt(M^2 - ||v||^2)]`` for the gallery; returns the vectors and ``M``."""
    sq = np.einsum("ij,ij->i", gallery_ip, gallery_ip)
    m2 = float(sq.max()) if len(sq) else 0.0
    extra = np.sqrt(np.maximum(m2 - sq, 0.0))[:, None]
    return np.ascontiguousarray(np.hstack([gallery_ip, extra]), dtype=np.float32), m2**0.5


class HNSWIndex:
    """HNSW graph (faiss ``IndexHNSWFlat``) over a geometry's gallery, with exact re-ranking."""

    def __init__(self, gallery: torch.Tensor, geometry: Manifold, m: int = 32, ef_construction: int = 200) -> None:
        import faiss

        self.geometry = geometry
        self.gallery = torch.as_tensor(gallery).float()
        vecs, self.max_norm = l2_augment(mips_vectors(self.gallery, geometry, "gallery").numpy())
        self.index = faiss.IndexHNSWFlat(vecs.shape[1], m)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(vecs)

    @classmethod
    def from_faiss(cls, index: object, gallery: torch.Tensor, geometry: Manifold) -> HNSWIndex:
        """Wrap a saved faiss HNSW graph (see ``hypalign.search.index``) without rebuilding it."""
        self = cls.__new__(cls)
        self.geometry, self.gallery, self.index = geometry, torch.as_tensor(gallery).float(), index
        return self

    def search(
        self, queries: torch.Tensor, k: int, ef_search: int = 128, rerank_margin: int = RERANK_MARGIN
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.as_tensor(queries).float()
        qv = mips_vectors(q, self.geometry, "query").numpy()
        qv = np.ascontiguousarray(np.hstack([qv, np.zeros((len(qv), 1), dtype=qv.dtype)]), dtype=np.float32)
        kc = min(len(self.gallery), k + rerank_margin)
        self.index.hnsw.efSearch = max(ef_search, kc)
        _, cand = self.index.search(qv, kc)
        return rerank(q, self.gallery, torch.from_numpy(cand), self.geometry, k)
