"""Exact (and approximate) nearest-neighbour search in every hypalign geometry.

``knn`` reduces geodesic k-NN to maximum inner product (Lorentz: the query's time coordinate
negated), runs it on faiss or chunked torch, and re-ranks candidates with the exact distance.
"""

from hypalign.search.exact import knn, mips_vectors, rerank

__all__ = ["knn", "mips_vectors", "rerank"]
