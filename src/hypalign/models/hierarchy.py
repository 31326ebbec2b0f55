"""An embedding table for hierarchy nodes in the Lorentz model, the Poincaré ball or Euclidean space.

Coordinates (``weight``, ``(N, D)``):

* ``lorentz``: space components of points on the hyperboloid of curvature ``-c``
  (``x_0 = sqrt(1/c + |x|^2)``; the MERU/hypalign convention of :class:`hypalign.geometry.Lorentz`).
  This chart covers the whole hyperboloid one-to-one, so unconstrained optimisers (Adam) move
  points exactly on the manifold with no projection; Riemannian SGD uses the exact exponential map.
* ``poincare``: points of the ball of radius ``1/sqrt(c)``; kept inside by projection after each step.
* ``euclidean``: plain coordinates (the baseline; distance ``|x - y|``).

With ``sparse=True`` (default) the table gets sparse gradients (only the rows a batch touches),
for ``SparseAdam`` or sparse Riemannian SGD: dense updates of a WordNet-sized table would cost
more than the loss itself.

Initialisation as in Nickel & Kiela (2017): uniform in ``[-init_scale, init_scale]``, near the origin;
or :func:`hierarchy_init` (placed from the hierarchy, copied into ``weight`` by the recipe).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hypalign.geometry import POINCARE_MAX_RADIUS, Manifold, get_geometry
from hypalign.losses.hierarchy import KINDS, hierarchy_nll_fused, hierarchy_nll_loss

HIERARCHY_MODELS = tuple(KINDS)


class HierarchyEmbedding(nn.Module):
    """``N`` node embeddings of dimension ``D`` in ``model`` (``lorentz``, ``poincare``, ``euclidean``)."""

    def __init__(
        self,
        n_nodes: int,
        dim: int,
        model: str = "lorentz",
        c: float = 1.0,
        init_scale: float = 1e-3,
        fused: bool = True,
        sparse: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype {dtype}: expected torch.float32 or torch.float64")
        if model not in HIERARCHY_MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(HIERARCHY_MODELS)}")
        if dim < 1 or n_nodes < 2:
            raise ValueError("need dim >= 1 and at least 2 nodes")
        self.model, self.c, self.fused, self.sparse = model, float(c), fused, sparse
        w = (torch.rand(n_nodes, dim, generator=generator) * 2 - 1) * init_scale
        self.weight = nn.Parameter(w.to(dtype))

    @property
    def geometry(self) -> Manifold:
        return get_geometry(self.model, c=self.c)

    def points(self) -> Tensor:
        """The embeddings in the coordinates of :attr:`geometry` (a detached copy)."""
        return self.weight.detach().clone()

    def forward(self, u: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Mean Nickel–Kiela loss of rows ``u`` against candidates ``v`` (positive first)."""
        if self.fused and self.weight.device.type == "cpu" and self.weight.dtype in (torch.float32, torch.float64):
            return hierarchy_nll_fused(self.weight, u, v, mask, self.model, self.c, sparse=self.sparse)
        if self.sparse:
            raise ValueError("sparse gradients need the fused CPU path; build with sparse=False")
        x = self.weight[u].unsqueeze(1).expand(-1, v.shape[1], -1)
        return hierarchy_nll_loss(self.geometry.dist(x, self.weight[v]), mask)

    @torch.no_grad()
    def project_(self) -> None:
        """Poincaré: pull points back within geodesic radius ``R / sqrt(c)`` of the origin, ``R =
        POINCARE_MAX_RADIUS[dtype]`` (``|x| <= tanh(R / 2) / sqrt(c)``: ``1 - 1.2e-5`` for float32); no-op
        otherwise."""
        if self.model != "poincare":
            return
        sc = self.c**0.5
        max_norm = math.tanh(POINCARE_MAX_RADIUS[self.weight.dtype] / 2) / sc
        norm = self.weight.norm(dim=-1, keepdim=True).clamp_min(1e-15)
        self.weight.mul_(torch.where(norm > max_norm, max_norm / norm, torch.ones_like(norm)))


def deepest_parent_tree(parents: list[list[int]], order: list[int]) -> tuple[list[int], list[int]]:
    """Depth of every node (its longest path from a root) and its deepest parent (``-1`` for a root): the
    spanning tree both placements below hang the nodes on. ``order`` lists parents before children."""
    depth, up = [0] * len(parents), [-1] * len(parents)
    for v in order:
        if parents[v]:
            up[v] = max(parents[v], key=lambda q: depth[q])
            depth[v] = depth[up[v]] + 1
    return depth, up


def _model_coordinates(rho: Any, u: Any, model: str, c: float, dtype: torch.dtype) -> Tensor:
    """Points at unit-curvature geodesic radius ``rho`` (numpy ``(N,)``) in directions ``u`` (``(N, D)``) as
    coordinates of ``model`` at curvature ``-c``: Poincaré ``tanh(rho / 2) / sqrt(c) * u``, Lorentz space
    components ``sinh(rho) / sqrt(c) * u``, Euclidean ``rho / sqrt(c) * u`` (geodesic radius ``rho / sqrt(c)``
    in each)."""
    import numpy as np

    sc = c**0.5
    scale = {"poincare": np.tanh(rho / 2), "lorentz": np.sinh(rho), "euclidean": rho}[model] / sc
    return torch.from_numpy(scale[:, None] * u).to(dtype)


def hierarchy_init(parents: list[list[int]], order: list[int], dim: int, model: str = "lorentz", c: float = 1.0,
                   spread: float = 1.5, step: float = 1.0, decay: float = 0.5, seed: int = 0,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Points placed from the hierarchy itself, one level further out per generation (a starting point for
    training, in the spirit of the combinatorial constructions of Sarkar 2011 / Sala et al. 2018).

    Roots lie at geodesic radius ``0.1`` in random directions. Each node, visited parents first (``order``),
    takes the direction of its deepest parent ``p`` plus Gaussian noise ``spread * decay**depth(p)`` per
    coordinate (renormalised: sibling subtrees fan out widely near the root and ever more narrowly below) at
    geodesic radius ``r(p) + step``. Coordinates of ``model`` at curvature ``-c``: Lorentz space components
    ``sinh(sqrt(c) r) / sqrt(c) * u``, Poincaré ``tanh(sqrt(c) r / 2) / sqrt(c) * u`` (the step shrunk so the
    deepest node stays within radius ``POINCARE_MAX_RADIUS[dtype] / sqrt(c)``, what ``dtype`` keeps inside the ball),
    Euclidean ``r * u``. ``(len(parents), dim)`` in ``dtype``."""
    import numpy as np

    if model not in HIERARCHY_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(HIERARCHY_MODELS)}")
    rng = np.random.default_rng(seed)
    n = len(parents)
    dirs = np.zeros((n, dim))
    depth_list, up = deepest_parent_tree(parents, order)
    depth = np.asarray(depth_list, dtype=np.int64)
    for v in order:
        p = up[v]
        d = rng.standard_normal(dim) if p < 0 else dirs[p] + spread * decay ** depth[p] * rng.standard_normal(dim)
        dirs[v] = d / max(np.linalg.norm(d), 1e-12)
    if model == "poincare" and depth.max() > 0:
        step = min(step, (POINCARE_MAX_RADIUS[dtype] / c**0.5 - 0.1) / depth.max())
    return _model_coordinates(c**0.5 * (0.1 + step * depth), dirs, model, c, dtype)

def spherical_code(n: int, m: int, seed: int = 0, iters: int = 100) -> tuple[Tensor, float]:
    """``n`` points spread over the unit sphere ``S^{m-1}`` and their smallest pairwise chord ``|w_i - w_j|``.

    ``n == 1``: ``e_1``. ``m == 1``: ``n`` evenly spaced points of ``[-1, 1]`` (chord ``2 / (n - 1)``; a 1-d
    "sphere" has only two points). ``n <= 2m``: the vertices ``+-e_i`` of the cross-polytope (chord ``sqrt 2``,
    or 2 for ``n <= 2``). More points: uniform random directions, then ``iters`` steps of repulsion (each point pushed
    away from the others with force ``1 / |w_i - w_j|^4``, step shrinking linearly), which raises the
    smallest angle well above that of random points. ``(n, m)`` float64 and the chord (2.0 for ``n == 1``).
    """
    import numpy as np

    if n < 1 or m < 1:
        raise ValueError(f"spherical_code: need n >= 1 and m >= 1, got n={n}, m={m}")
    if n == 1:  # one point off the centre: an only child still steps aside from its parent's direction
        return torch.eye(1, m, dtype=torch.float64), 2.0
    if m == 1:
        return torch.linspace(-1.0, 1.0, n, dtype=torch.float64)[:, None], 2.0 / (n - 1)
    if n <= 2 * m:
        e = torch.eye(m, dtype=torch.float64)
        w = torch.stack([e[i // 2] * (1.0 if i % 2 == 0 else -1.0) for i in range(n)])
        return w, 2.0 if n == 2 else 2**0.5
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, m))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for it in range(iters):
        r2 = np.maximum(2.0 - 2.0 * (x @ x.T), 1e-12)
        np.fill_diagonal(r2, np.inf)
        w = 1.0 / r2**2
        force = x * w.sum(1, keepdims=True) - w @ x  # sum_j (x_i - x_j) / |x_i - x_j|^4
        x = x + force / np.abs(force).max() * (0.025 * (1 - it / iters) + 0.0025)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = x @ x.T
    np.fill_diagonal(g, -1.0)
    return torch.from_numpy(x), float(np.sqrt(max(2.0 - 2.0 * g.max(), 0.0)))


def radial_step(chord: float, cap: float) -> float:
    """Geodesic radius between a node and its children in :func:`combinatorial_construction`:
    ``delta = -2 log q`` with ``q = exp(-delta / 2)`` the smallest root of ``q (1 / (1 - q) + 2 / cap) = chord``.

    The children of ``p`` sit at angle ``t`` from ``p``'s direction, ``chord * t`` apart (``chord`` of their
    :func:`spherical_code`). One level down every angle shrinks by ``q``: a child's whole subtree then lies
    within ``t q / (1 - q)`` of the child's direction (a geometric series), and a sibling's shadow reaches
    ``2 exp(-rho / 2) = 2 t q / cap`` from the sibling's. Neither overlaps when ``chord * t`` exceeds their sum.
    """
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: the left side grows with q from 0 to infinity
        q = (lo + hi) / 2
        lo, hi = (q, hi) if q * (1 / (1 - q) + 2 / cap) < chord else (lo, q)
    return -2 * math.log(lo)


def combinatorial_construction(parents: list[list[int]], order: list[int], dim: int, model: str = "poincare",
                               c: float = 1.0, margin: float = 0.3, cap: float = 1.4, seed: int = 0,
                               dtype: torch.dtype = torch.float64) -> Tensor:
    """Points placed from the hierarchy alone by nested shadow cones: a combinatorial construction in the
    spirit of Sarkar (2011) and Sala et al. (2018, "Representation tradeoffs for hyperbolic embeddings"),
    shaped for the reconstruction ranking of Nickel & Kiela (2017): every node nearer to all its ancestors
    than to the rest.

    Worked in unit curvature (geodesic radius ``rho``, direction ``u``), then mapped to curvature ``-c``.
    Far from the origin ``d(x, y) ~ rho_x + rho_y + 2 log sin(angle(x, y) / 2)``: ``y`` is nearer to ``x``
    than the origin is only when ``x``'s direction lies within about ``2 exp(-rho_y / 2)`` of ``y``'s (the
    *shadow* of ``y``). So:

    * a spanning tree: each node under its deepest parent (longest path from a root); several roots hang
      from a virtual root at the origin, a single root sits at the origin;
    * the ``N`` children of ``p`` get the directions ``cos(t) u_p + sin(t) B_p w_i``: ``w_i`` a
      :func:`spherical_code` of ``N`` points on the sphere of directions orthogonal to ``u_p`` (``B_p`` a
      random orthonormal basis of it; the whole sphere, randomly rotated, for a node at the origin) and
      ``t = min(cap * exp(-rho_p / 2), 1.2)``: the children's cone inside ``p``'s shadow (``cap < 2``);
    * at radius ``rho_p + delta``, ``delta = radial_step(chord_N, cap) + margin``: siblings' subtrees and
      shadows kept apart (:func:`radial_step`); an only child too steps aside by ``t`` (its code is ``e_1``,
      chord 2): on its parent's own direction WordNet mammals come out at MAP 0.980 instead of 0.999;
    * if the deepest node would lie beyond ``POINCARE_MAX_RADIUS[dtype]`` (what ``dtype`` keeps apart, in
      units of ``1 / sqrt(c)``), ``margin`` is dropped to 0, then ``cap`` raised to 1.7 and 1.95 (shorter
      steps), and if it still does not fit every radius is scaled down (level order kept, margins shrunk).

    Coordinates of ``model`` at curvature ``-c``: Poincaré ``tanh(rho / 2) / sqrt(c) * u``, Lorentz space
    components ``sinh(rho) / sqrt(c) * u``, Euclidean ``rho / sqrt(c) * u`` (only a fan: Euclidean space has
    no room for it). Trees come out nearly exact (WordNet mammals, 10-d: MAP 0.999 with nothing trained); a node with
    several parents sits under one of them only, which is what training has to repair (docs/hierarchy.md).
    ``(len(parents), dim)`` in ``dtype``.
    """
    import numpy as np

    if model not in HIERARCHY_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(HIERARCHY_MODELS)}")
    if dim < 2:
        raise ValueError(f"combinatorial_construction needs dim >= 2, got {dim}")
    if not 0 < cap < 2 or margin < 0:
        raise ValueError(f"combinatorial_construction needs 0 < cap < 2 and margin >= 0, got {cap}, {margin}")
    n = len(parents)
    rng = np.random.default_rng(seed)
    _, up = deepest_parent_tree(parents, order)
    children: list[list[int]] = [[] for _ in range(n + 1)]  # slot n: the virtual root
    for v in order:
        children[up[v] if up[v] >= 0 else n].append(v)
    at_origin = np.zeros(n + 1, dtype=bool)
    at_origin[n] = True
    if len(children[n]) == 1:  # a single root: at the origin itself
        at_origin[children[n][0]] = True
        children[n] = []
    tops = [n, *order]
    codes: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
    for p in tops:
        k = len(children[p])
        m = dim if at_origin[p] else dim - 1
        if k and (k, m) not in codes:
            w, chord = spherical_code(k, m, seed=int(rng.integers(2**31)))
            codes[k, m] = (w.numpy(), chord)

    def radii(margin: float, cap: float) -> np.ndarray:
        rho = np.zeros(n + 1)
        for p in tops:
            ch = children[p]
            if ch:
                k = len(ch)
                chord = codes[k, dim if at_origin[p] else dim - 1][1]
                rho[ch] = rho[p] + radial_step(chord, cap) + margin
        return rho

    budget = math.inf if model == "euclidean" else POINCARE_MAX_RADIUS[dtype]
    for try_margin, try_cap in [(margin, cap), (0.0, cap), (0.0, max(cap, 1.7)), (0.0, max(cap, 1.95))]:
        rho = radii(try_margin, try_cap)
        if rho.max() <= budget:
            break
    cap = try_cap  # the directions use the cap the radii were made for
    u = np.zeros((n + 1, dim))
    for p in tops:
        ch = children[p]
        if not ch:
            continue
        if at_origin[p]:
            w, _ = codes[len(ch), dim]
            q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
            dirs = w @ q.T
        else:
            w, _ = codes[len(ch), dim - 1]
            q, _ = np.linalg.qr(np.column_stack([u[p], rng.standard_normal((dim, dim - 1))]))
            norm = np.linalg.norm(w, axis=1, keepdims=True)  # 1, or |w| <= 1 on the 1-d "sphere"
            t = min(cap * math.exp(-rho[p] / 2), 1.2) * norm
            dirs = np.cos(t) * u[p] + np.sin(t) * ((w / np.maximum(norm, 1e-300)) @ q[:, 1:].T)
        u[ch] = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    rho, u = rho[:n], u[:n]
    if rho.max() > budget:
        rho = rho * (budget / rho.max())
    return _model_coordinates(rho, u, model, c, dtype)
