"""δ-hyperbolicity: trees, the 4-cycle, brute force, bounds, Hyp-ViT's numpy formulation, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypalign.eval.delta import (
    delta_basepoint,
    delta_exact,
    delta_four_point_bruteforce,
    delta_hyperbolicity,
    distance_matrix,
    gromov_products,
    suggest_curvature,
)


def tree_distances(parents: list[int], weights: list[float] | None = None) -> np.ndarray:
    """Path metric of a rooted tree given parent indices (parents[0] = -1)."""
    n = len(parents)
    w = weights or [1.0] * n
    depth_path: list[list[int]] = []
    for v in range(n):
        path, u = [], v
        while u != -1:
            path.append(u)
            u = parents[u]
        depth_path.append(path[::-1])
    root_dist = np.zeros(n)
    for v in range(1, n):
        root_dist[v] = root_dist[parents[v]] + w[v]
    d = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            pa, pb = depth_path[a], depth_path[b]
            k = 0
            while k < min(len(pa), len(pb)) and pa[k] == pb[k]:
                k += 1
            lca = pa[k - 1]
            d[a, b] = root_dist[a] + root_dist[b] - 2 * root_dist[lca]
    return d


def c4() -> np.ndarray:
    return np.array([[0, 1, 2, 1], [1, 0, 1, 2], [2, 1, 0, 1], [1, 2, 1, 0]], dtype=float)


def hypvit_numpy_delta(d: np.ndarray, base: int = 0) -> float:
    """Straightforward numpy (max, min) product as in Hyp-ViT's delta.py (reference)."""
    a = gromov_products(d, base)
    maxmin = np.max(np.minimum(a[:, :, None], a[None, :, :]), axis=1)
    return float(np.max(maxmin - a))


def test_star_tree_has_zero_delta() -> None:
    d = tree_distances([-1] + [0] * 9)
    assert delta_basepoint(d) == 0.0
    assert delta_exact(d) == 0.0
    r = delta_hyperbolicity(np.eye(5))  # 5 points pairwise sqrt(2) apart: a star's leaves
    assert r.delta == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=3, max_size=25), st.data())
def test_weighted_trees_have_zero_delta(seeds: list[int], data: st.DataObject) -> None:
    parents = [-1] + [s % (i + 1) for i, s in enumerate(seeds)]
    weights = [0.0] + [data.draw(st.floats(0.1, 5.0)) for _ in seeds]
    d = tree_distances(parents, weights)
    assert delta_exact(d) == pytest.approx(0.0, abs=1e-9)
    assert delta_basepoint(d, base=len(parents) - 1) == pytest.approx(0.0, abs=1e-9)


def test_four_cycle() -> None:
    d = c4()
    assert delta_basepoint(d) == 1.0
    assert delta_exact(d) == 1.0
    assert delta_four_point_bruteforce(d) == 1.0
    assert 2 * delta_exact(d) / d.max() == 1.0  # relative δ of C4 is 1


@settings(max_examples=20, deadline=None)
@given(st.integers(4, 14), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_exact_matches_bruteforce_and_bounds(n: int, dim: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(n, dim))
    d = distance_matrix(x)
    exact = delta_exact(d)
    assert exact == pytest.approx(delta_four_point_bruteforce(d), rel=1e-12, abs=1e-12)
    for strategy in ("pruned", "basepoints"):
        assert delta_exact(d, strategy) == pytest.approx(exact, rel=1e-12, abs=1e-12)
    per_base = [delta_basepoint(d, b) for b in range(n)]
    assert exact == pytest.approx(max(per_base), rel=1e-12, abs=1e-12)  # δ = max over base points
    for dp in per_base:
        assert dp <= exact + 1e-12 and exact <= 2 * dp + 1e-12


@settings(max_examples=15, deadline=None)
@given(st.integers(4, 40), st.sampled_from([2, 3, 8]), st.floats(0.1, 4.0), st.integers(0, 2**31 - 1))
def test_hyperbolic_space_is_log2_hyperbolic(n: int, dim: int, c: float, seed: int) -> None:
    """Real hyperbolic space of curvature -c has four-point δ = ln 2 / sqrt(c) (Nica & Špakula 2016):
    no finite subset exceeds it, and well-spread points in the disk come close."""
    import torch

    from hypalign.geometry import PoincareBall

    x = PoincareBall(c, boundary_eps=1e-12).expmap0(
        torch.from_numpy(np.random.default_rng(seed).normal(size=(n, dim)) * 3 / math.sqrt(c))
    )
    d = distance_matrix(x.numpy(), "poincare", c)
    assert delta_exact(d) <= math.log(2) / math.sqrt(c) * (1 + 1e-9)


def test_hyperbolic_plane_reaches_log2() -> None:
    import torch

    from hypalign.geometry import PoincareBall

    x = PoincareBall(1.0).expmap0(torch.from_numpy(np.random.default_rng(0).normal(size=(150, 2)) * 3.0))
    delta = delta_exact(distance_matrix(x.numpy(), "poincare", 1.0))
    assert math.log(2) * 0.99 < delta <= math.log(2) + 1e-9


@pytest.mark.parametrize("n", [7, 33, 100, 257])
def test_basepoint_kernel_matches_numpy_reference(n: int) -> None:
    # sizes straddle the kernel's 32 x 256 tiles
    x = np.random.default_rng(n).normal(size=(n, 16))
    d = distance_matrix(x)
    for base in (0, n - 1):
        assert delta_basepoint(d, base) == pytest.approx(hypvit_numpy_delta(d, base), rel=1e-12)


def test_sampling_estimator_and_curvature_rule() -> None:
    x = np.random.default_rng(0).normal(size=(300, 8))
    r = delta_hyperbolicity(x, samples=100, repeats=4, seed=1)
    assert r.n == 100 and r.repeats == 4 and r.n_total == 300
    assert r.delta_std > 0 and r.delta_rel_std > 0
    assert r.c_suggested == pytest.approx((0.144 / r.delta_rel) ** 2)
    assert r.to_dict()["delta_rel"] == r.delta_rel
    # same seed, same answer; samples >= n uses every point once
    assert delta_hyperbolicity(x, samples=100, repeats=4, seed=1) == r
    full = delta_hyperbolicity(x, samples=5000, repeats=7)
    assert full.n == 300 and full.repeats == 1 and full.delta_std == 0
    assert full.delta == pytest.approx(delta_basepoint(distance_matrix(x)))
    assert suggest_curvature(0.0) == math.inf
    assert delta_hyperbolicity(np.eye(5)).to_dict()["c_suggested"] is None


def test_metrics() -> None:
    from hypalign.geometry import Lorentz, PoincareBall

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 5))
    # cosine = angle: invariant to rescaling each point
    a = delta_hyperbolicity(x, metric="cosine")
    b = delta_hyperbolicity(x * rng.uniform(0.1, 10, size=(60, 1)), metric="cosine")
    assert a.delta == pytest.approx(b.delta, rel=1e-9)
    assert a.diameter <= math.pi + 1e-12
    # poincare and lorentz agree through the isometry
    import torch

    lor = Lorentz(0.5).expmap0(torch.from_numpy(x) * 0.5).numpy()
    from hypalign.geometry import lorentz_to_poincare

    ball = lorentz_to_poincare(torch.from_numpy(lor), 0.5).numpy()
    dl = delta_hyperbolicity(lor, metric="lorentz", c=0.5, method="exact")
    dp = delta_hyperbolicity(ball, metric="poincare", c=0.5, method="exact")
    assert dl.delta == pytest.approx(dp.delta, rel=1e-6)
    assert dl.diameter == pytest.approx(dp.diameter, rel=1e-9)
    assert PoincareBall(0.5).contains(torch.from_numpy(ball)).all()
    # hyperbolic points are more tree-like under the hyperbolic metric than under the Euclidean one
    assert dp.delta_rel < delta_hyperbolicity(ball, metric="euclidean").delta_rel


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        delta_hyperbolicity(np.zeros((5, 2)), metric="manhattan")
    with pytest.raises(ValueError, match="method"):
        delta_hyperbolicity(np.zeros((5, 2)), method="approx")
    with pytest.raises(ValueError, match="at least 4"):
        delta_hyperbolicity(np.zeros((5, 2)), samples=3)
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        delta_hyperbolicity(np.zeros(5))
