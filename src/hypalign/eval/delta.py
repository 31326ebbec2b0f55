"""Gromov δ-hyperbolicity of a finite metric space, and the curvature it suggests.

Definitions (Gromov 1987; Khrulkov et al. 2020 "Hyperbolic Image Embeddings";
Ermolov et al. 2022 "Hyperbolic Vision Transformers", §3.4):

* Gromov product w.r.t. a base point ``p``: ``(x|y)_p = ½ (d(p,x) + d(p,y) - d(x,y))``.
* Base-point δ: ``δ_p = max_{x,y,z} [ min((x|z)_p, (z|y)_p) - (x|y)_p ]`` — the largest entry
  of ``(A ⊗ A) - A`` where ``A = [(x|y)_p]`` and ``⊗`` is the (max, min) matrix product
  (``method="basepoint"``, what Hyp-ViT's ``delta.py`` computes with ``p`` = the first point).
* Four-point δ: for each quadruple, with pair sums ``S1 >= S2 >= S3`` of
  ``d(x,y)+d(z,w)``, ``d(x,z)+d(y,w)``, ``d(x,w)+d(y,z)``, ``δ(x,y,z,w) = ½ (S1 - S2)``;
  ``δ = max`` over all quadruples = ``max_p δ_p`` (``method="exact"``).
  Always ``δ_p <= δ <= 2 δ_p``.
* Relative δ: ``δ_rel = 2δ / diam`` (in ``[0, 1]``); suggested curvature
  ``c = (0.144 / δ_rel)^2`` (Hyp-ViT's rule; 0.144 is δ_rel of a ball of the
  hyperbolic plane sampled uniformly, as in Khrulkov et al.).

The (max, min) product is ``n^3`` work; it runs in a cache-blocked numba kernel on all
cores (n = 2000 in about a second on 2 cores). The exact method picks the cheaper of a
pruned pair scan (Cohen, Coudert & Lagoutte 2015) and the maximum over all base points;
both are exact for any n, their cost depends on the data (see docs/geometry.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from hypalign.geometry import get_geometry

Metric = Literal["euclidean", "cosine", "poincare", "lorentz"]
Method = Literal["basepoint", "exact"]
METRICS: tuple[str, ...] = ("euclidean", "cosine", "poincare", "lorentz")
METHODS: tuple[str, ...] = ("basepoint", "exact")
#: δ_rel of the hyperbolic plane, the constant in Hyp-ViT's curvature rule c = (0.144/δ_rel)^2.
DELTA_REL_HYPERBOLIC_PLANE = 0.144


def suggest_curvature(delta_rel: float) -> float:
    """Hyp-ViT's rule ``c = (0.144 / δ_rel)^2``; ``inf`` for a tree-like set (δ_rel = 0)."""
    if delta_rel <= 0:
        return math.inf
    return (DELTA_REL_HYPERBOLIC_PLANE / delta_rel) ** 2


def distance_matrix(points: np.ndarray | torch.Tensor, metric: str = "euclidean", c: float = 1.0) -> np.ndarray:
    """All pairwise distances in float64 under ``metric`` (``cosine`` = angle between the vectors)."""
    x = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    geometry = get_geometry("sphere" if metric == "cosine" else metric, c=c)
    if metric == "cosine":
        x = geometry.project(x)
    d = geometry.cdist(x, x).numpy()
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, d.T)  # exact symmetry


def gromov_products(d: np.ndarray, base: int = 0) -> np.ndarray:
    """``A[x, y] = (x|y)_p = ½ (d(p,x) + d(p,y) - d(x,y))`` with ``p = base``."""
    row = d[base]
    return 0.5 * (row[:, None] + row[None, :] - d)


def delta_basepoint(d: np.ndarray, base: int = 0) -> float:
    """Base-point δ of a distance matrix (see module docstring)."""
    from hypalign.eval._delta_kernels import maxmin_excess

    a = np.ascontiguousarray(gromov_products(np.asarray(d, dtype=np.float64), base))
    return max(0.0, float(maxmin_excess(a)))


#: measured cost of one inner step of the pair scan relative to one (max, min) step of the
#: vectorised base-point kernel (2 cores, x86-64); used to choose the cheaper exact strategy.
_PAIR_SCAN_COST_RATIO = 22.0


def delta_exact(d: np.ndarray, strategy: str = "auto") -> float:
    """Exact four-point δ (max over all quadruples).

    Two exact strategies, both seeded with the base-point δ at point 0 (a lower bound):

    * ``"pruned"``: the pair scan of Cohen, Coudert & Lagoutte (2015) — pairs in decreasing
      distance, stopping once ``d(x, y) <= 2 δ_best``. Its cost is about ``K^2/2`` steps for
      the ``K`` pairs longer than ``2 δ``: fast when δ is small next to most distances.
    * ``"basepoints"``: ``δ = max_p δ_p``, ``n`` runs of the vectorised base-point kernel
      (``n^4 / 2`` cheap steps).

    ``"auto"`` estimates both costs and runs the cheaper one. Reach on 2 cores: n = 500 in
    about 15 s, n = 1000 in 2-3 minutes (docs/benchmarks.md, "Exact δ reach").
    """
    from hypalign.eval._delta_kernels import four_point_pruned

    d = np.ascontiguousarray(np.asarray(d, dtype=np.float64))
    n = d.shape[0]
    if n < 4:
        return 0.0
    if strategy not in ("auto", "pruned", "basepoints"):
        raise ValueError(f"unknown strategy {strategy!r}; expected auto, pruned or basepoints")
    lower = delta_basepoint(d, 0)
    iu, ju = np.triu_indices(n, k=1)
    pair_d = d[iu, ju]
    if strategy == "auto":
        k = int(np.count_nonzero(pair_d > 2.0 * lower))
        strategy = "pruned" if _PAIR_SCAN_COST_RATIO * k * k < float(n) ** 4 else "basepoints"
    if strategy == "basepoints":
        return max([lower] + [delta_basepoint(d, p) for p in range(1, n)])
    order = np.argsort(-pair_d, kind="stable")
    best, _ = four_point_pruned(d, iu[order].astype(np.int64), ju[order].astype(np.int64), lower)
    return float(best)


def delta_four_point_bruteforce(d: np.ndarray) -> float:
    """Reference O(n^4) four-point δ (numpy, for tests and small sets only)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[0]
    best = 0.0
    for x in range(n):
        for y in range(n):
            s = np.stack(
                [
                    d[x, y] + d[:, :],  # (z, w) pairs: d(x,y) + d(z,w)
                    d[x, :, None] + d[y, None, :],  # d(x,z) + d(y,w)
                    d[x, None, :] + d[y, :, None],  # d(x,w) + d(y,z)
                ]
            )
            s.sort(axis=0)
            best = max(best, float(0.5 * (s[2] - s[1]).max()))
    return best


def sampling_plan(n_total: int, samples: int | None, repeats: int) -> tuple[int, int]:
    """``(points per estimate, number of estimates)``: every point once when ``samples`` is unset or
    ``>= n_total``, else ``repeats`` random subsets of ``samples`` points."""
    if samples is None or samples >= n_total:
        return n_total, 1
    return int(samples), max(1, int(repeats))


@dataclass
class DeltaResult:
    """δ-hyperbolicity estimate; ``*_std`` are over the repeats (0 for a single evaluation)."""

    delta: float
    delta_rel: float
    diameter: float
    c_suggested: float
    n: int
    n_total: int
    repeats: int
    method: str
    metric: str
    c: float | None
    delta_std: float = 0.0
    delta_rel_std: float = 0.0
    diameter_std: float = 0.0

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if math.isinf(self.c_suggested):
            out["c_suggested"] = None  # JSON has no infinity: a tree needs unbounded curvature
        return out


def delta_hyperbolicity(
    points: np.ndarray | torch.Tensor,
    metric: str = "euclidean",
    c: float = 1.0,
    method: str = "basepoint",
    samples: int | None = None,
    repeats: int = 1,
    seed: int = 0,
    on_repeat: Callable[[int], None] | None = None,
) -> DeltaResult:
    """δ, relative δ, diameter and suggested curvature of a point set.

    Args:
        points: ``(n, D)`` array of embeddings (Lorentz: space components; Poincaré: inside the ball).
        metric: ``euclidean``, ``cosine`` (angle), ``poincare`` or ``lorentz`` (with curvature ``-c``).
        method: ``basepoint`` (Hyp-ViT) or ``exact`` (four-point).
        samples: points per estimate; with ``samples >= n`` (or None) every point is used once.
        repeats: number of random subsets of ``samples`` points (Hyp-ViT: 2000 points x 100).
        seed: seed of the subset draws.
        on_repeat: called after each repeat with its index (progress bars).

    The mean over repeats is reported, with standard deviations; ``c_suggested`` comes
    from the mean ``δ_rel``. The base point is the first point of each subset.
    """
    pts = np.asarray(points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else points)
    if pts.ndim != 2 or pts.shape[0] < 1:
        raise ValueError(f"expected an (n, D) array of points, got shape {pts.shape}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    n_total = pts.shape[0]
    if samples is not None and samples < 4:
        raise ValueError(f"samples must be at least 4 (δ needs four points), got {samples}")
    n, repeats = sampling_plan(n_total, samples, repeats)
    use_all = n == n_total
    rng = np.random.default_rng(seed)
    deltas, rels, diams = [], [], []
    for r in range(repeats):
        sub = pts if use_all else pts[rng.choice(n_total, size=n, replace=False)]
        d = distance_matrix(sub, metric, c)
        delta = delta_basepoint(d, 0) if method == "basepoint" else delta_exact(d)
        diam = float(d.max())
        deltas.append(delta)
        diams.append(diam)
        rels.append(2.0 * delta / diam if diam > 0 else 0.0)
        if on_repeat is not None:
            on_repeat(r)
    delta_rel = float(np.mean(rels))
    return DeltaResult(
        delta=float(np.mean(deltas)),
        delta_rel=delta_rel,
        diameter=float(np.mean(diams)),
        c_suggested=suggest_curvature(delta_rel),
        n=n,
        n_total=n_total,
        repeats=repeats,
        method=method,
        metric=metric,
        c=c if metric in ("poincare", "lorentz") else None,
        delta_std=float(np.std(deltas)),
        delta_rel_std=float(np.std(rels)),
        diameter_std=float(np.std(diams)),
    )
