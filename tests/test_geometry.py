"""Geometry core: spec §0.3 reference values, properties, geoopt as oracle, float32 safety."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hypalign.geometry import (
    Euclidean,
    Lorentz,
    PoincareBall,
    Sphere,
    feature_clip,
    get_geometry,
    lorentz_full,
    lorentz_to_poincare,
    poincare_to_lorentz,
)
from hypalign.geometry import poincare as pmath

F64 = torch.float64


def t(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=F64)


# ---- spec §0.3 reference values ----------------------------------------------------------------
class TestReferenceValues:
    def test_hypvit_poincare(self) -> None:
        ball = PoincareBall(c=0.1)
        u_clip = feature_clip(t(3.0, 4.0), 2.3)
        assert torch.allclose(u_clip, t(1.379997, 1.839996), atol=1e-6)
        pu = ball.expmap0(u_clip)
        pv = ball.expmap0(feature_clip(t(-1.0, 0.5), 2.3))
        assert torch.allclose(pu, t(1.17907, 1.572093), atol=1e-5)
        assert torch.allclose(pv, t(-0.960316, 0.480158), atol=1e-6)
        # Hyp-ViT's code adds 1e-5 to the Möbius denominator: its 5.710465 is reproduced with that term,
        # and the exact distance (closed form == Möbius form without it) is 5.710549.
        assert float(pmath.dist_mobius(pu, pv, 0.1, den_eps=1e-5)) == pytest.approx(5.710465, abs=1e-6)
        assert float(ball.dist(pu, pv)) == pytest.approx(5.710549, abs=1e-6)
        assert float(pmath.dist_mobius(pu, pv, 0.1)) == pytest.approx(float(ball.dist(pu, pv)), rel=1e-12)
        zero = torch.zeros(2, dtype=F64)
        assert float(pmath.dist_mobius(zero, pu, 0.1, den_eps=1e-5)) == pytest.approx(4.599927, abs=1e-6)
        # geoopt convention: d(0, expmap0(u)) = 2 ||u||
        assert float(ball.dist(torch.zeros(2, dtype=F64), pu)) == pytest.approx(2 * float(u_clip.norm()), rel=1e-6)

    def test_meru_lorentz(self) -> None:
        lor = Lorentz(c=1.0)
        T = lor.expmap0(t(0.3, 0.1, 0.0))
        I = lor.expmap0(t(1.2, 0.5, 0.2))  # noqa: E741 (MERU names the image point I)
        assert torch.allclose(T, t(0.305025, 0.101675, 0.0), atol=1e-6)
        assert torch.allclose(lor.logmap0(T), t(0.3, 0.1, 0.0), atol=1e-9)
        assert torch.allclose(I, t(1.577192, 0.657163, 0.262865), atol=1e-6)
        assert float(lor.inner(T, I)) == pytest.approx(-1.549913, abs=1e-6)
        assert float(lor.dist(T, I)) == pytest.approx(1.005792, abs=1e-6)
        # MERU's clamp reports d(T, T) = 1.414e-4; the stable form used here gives (near) 0.
        assert float(lor.dist(T, T)) < 1.414e-4 / 100
        assert float(lor.dist(torch.zeros(3, dtype=F64), I)) == pytest.approx(1.315295, abs=1e-6)
        assert float(lor.half_aperture(T)) == pytest.approx(0.671341, abs=1e-6)
        assert float(lor.half_aperture(I)) == pytest.approx(0.115952, abs=1e-6)
        assert float(lor.oxy_angle(T, I)) == pytest.approx(0.248234, abs=1e-6)
        assert float(lor.oxy_angle(T, I)) < float(lor.half_aperture(T))  # I inside T's cone: loss 0
        assert float(lor.oxy_angle(T, lor.expmap0(2 * t(0.3, 0.1, 0.0)))) < 1e-3  # same ray


# ---- properties (hypothesis) ---------------------------------------------------------------------
DIM = 4
curvatures = st.sampled_from([0.1, 0.5, 1.0, 2.0])
tangents = arrays(np.float64, (DIM,), elements=st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False))


def _manifolds(c: float) -> list:
    return [PoincareBall(c), PoincareBall(c, convention="half"), Lorentz(c), Sphere(), Euclidean()]


@settings(max_examples=60, deadline=None)
@given(c=curvatures, u=tangents, v=tangents, w=tangents)
def test_metric_axioms(c: float, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> None:
    for m in _manifolds(c):
        if isinstance(m, Sphere) and min(np.linalg.norm(a) for a in (u, v, w)) < 1e-6:
            continue  # the zero vector has no direction on the sphere
        x, y, z = (m.expmap0(torch.from_numpy(a)) for a in (u, v, w))
        dxy, dyx = float(m.dist(x, y)), float(m.dist(y, x))
        assert dxy == pytest.approx(dyx, rel=1e-9, abs=1e-9), m
        assert float(m.dist(x, x)) < 1e-7, m
        assert dxy >= 0
        assert float(m.dist(x, z)) <= dxy + float(m.dist(y, z)) + 1e-7 * (1 + dxy), m


@settings(max_examples=60, deadline=None)
@given(c=curvatures, u=tangents)
def test_expmap0_logmap0_inverse(c: float, u: np.ndarray) -> None:
    ut = torch.from_numpy(u)
    for m in (PoincareBall(c, boundary_eps=1e-12), PoincareBall(c, convention="half", boundary_eps=1e-12), Lorentz(c)):
        # keep away from the float64 tanh saturation of the ball
        if isinstance(m, PoincareBall) and math.sqrt(c) * float(ut.norm()) > 8:
            continue
        assert torch.allclose(m.logmap0(m.expmap0(ut)), ut, rtol=1e-7, atol=1e-9), m
    # distance from the origin: ||u|| for Lorentz and the half convention, 2||u|| for geoopt's
    zero = torch.zeros(DIM, dtype=F64)
    norm = float(ut.norm())
    assert float(Lorentz(c).dist(zero, Lorentz(c).expmap0(ut))) == pytest.approx(norm, rel=1e-7, abs=1e-9)
    if math.sqrt(c) * norm < 8:
        half = PoincareBall(c, convention="half", boundary_eps=1e-12)
        assert float(half.dist(zero, half.expmap0(ut))) == pytest.approx(norm, rel=1e-6, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(c=curvatures, u=tangents, v=tangents)
def test_poincare_lorentz_isometry(c: float, u: np.ndarray, v: np.ndarray) -> None:
    lor, ball = Lorentz(c), PoincareBall(c, boundary_eps=1e-12)
    x, y = lor.expmap0(torch.from_numpy(u)), lor.expmap0(torch.from_numpy(v))
    p, q = lorentz_to_poincare(x, c), lorentz_to_poincare(y, c)
    assert float(ball.dist(p, q)) == pytest.approx(float(lor.dist(x, y)), rel=1e-6, abs=1e-8)
    assert torch.allclose(poincare_to_lorentz(p, c), x, rtol=1e-6, atol=1e-8)
    # the "half" exponential map commutes with the isometry
    half = PoincareBall(c, convention="half", boundary_eps=1e-12)
    if math.sqrt(c) * float(np.linalg.norm(u)) < 8:
        assert torch.allclose(half.expmap0(torch.from_numpy(u)), p, rtol=1e-6, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(c=curvatures, data=st.data())
def test_cdist_matches_paired_dist(c: float, data: st.DataObject) -> None:
    n, m = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    u = data.draw(arrays(np.float64, (n, DIM), elements=st.floats(-2, 2, allow_nan=False, allow_subnormal=False)))
    v = data.draw(arrays(np.float64, (m, DIM), elements=st.floats(-2, 2, allow_nan=False, allow_subnormal=False)))
    for geo in _manifolds(c):
        if isinstance(geo, Sphere) and (
            np.linalg.norm(u, axis=1).min() < 1e-6 or np.linalg.norm(v, axis=1).min() < 1e-6
        ):
            continue  # the zero vector has no direction on the sphere
        x, y = geo.expmap0(torch.from_numpy(u)), geo.expmap0(torch.from_numpy(v))
        full = geo.cdist(x, y, chunk_rows=2)
        paired = geo.dist(x[:, None, :], y[None, :, :])
        assert full.shape == (n, m)
        # the matrix-product form loses absolute precision ~sqrt(eps * scale) for near-coincident points
        assert torch.allclose(full, paired, rtol=1e-6, atol=1e-6), geo


def test_lorentz_full_coordinates_on_hyperboloid() -> None:
    c = 0.7
    x = Lorentz(c).expmap0(torch.randn(50, 5, dtype=F64))
    X = lorentz_full(x, c)
    mink = -(X[:, 0] ** 2) + (X[:, 1:] ** 2).sum(-1)
    assert torch.allclose(mink, torch.full_like(mink, -1 / c), rtol=1e-10)


# ---- means ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("geo", [PoincareBall(0.5), Lorentz(0.5), Sphere(), Euclidean()])
def test_mean_of_one_point_and_symmetric_pairs(geo) -> None:
    x = geo.expmap0(torch.tensor([[0.4, -0.3, 0.2]], dtype=F64))
    assert torch.allclose(geo.mean(x), x[0], atol=1e-10)
    if not isinstance(geo, Sphere):
        pair = torch.cat([x, -x])
        assert torch.allclose(geo.mean(pair), torch.zeros(3, dtype=F64), atol=1e-10)


def test_mean_is_equidistant_for_two_points() -> None:
    for geo in (PoincareBall(1.0), Lorentz(1.0)):
        x = geo.expmap0(torch.tensor([[0.9, 0.1], [-0.2, 0.7]], dtype=F64))
        mid = geo.mean(x)
        assert float(geo.dist(mid, x[0])) == pytest.approx(float(geo.dist(mid, x[1])), rel=1e-9)
        assert float(geo.dist(mid, x[0])) == pytest.approx(float(geo.dist(x[0], x[1])) / 2, rel=1e-9)


# ---- geoopt as oracle ----------------------------------------------------------------------------
def test_agrees_with_geoopt() -> None:
    import geoopt  # a dev dependency: the oracle must be there
    g = torch.Generator().manual_seed(0)
    for c in (0.1, 1.0, 3.0):
        u, v = torch.randn(200, 16, dtype=F64, generator=g), torch.randn(200, 16, dtype=F64, generator=g)
        ours, ref = PoincareBall(c, boundary_eps=1e-5), geoopt.PoincareBall(c=c)  # geoopt's float64 eps
        # geoopt's artanh clamp saturates distances near the boundary: compare at hyperbolic radius <~ 4
        x, y = ref.expmap0(u * 0.25 / math.sqrt(c)), ref.expmap0(v * 0.25 / math.sqrt(c))
        assert torch.allclose(ours.expmap0(u * 3), ref.projx(ref.expmap0(u * 3)), rtol=1e-6, atol=1e-6)
        # geoopt evaluates tan_k through its own series/clamps: agreement to ~1e-7 absolute
        assert torch.allclose(ours.expmap0(u * 0.25 / math.sqrt(c)), x, rtol=1e-6, atol=1e-6)
        assert torch.allclose(ours.logmap0(x), ref.logmap0(x), rtol=1e-5, atol=1e-6)
        # geoopt's Möbius/artanh path loses ~1e-6 relative near the boundary (ours matches mpmath, below)
        assert torch.allclose(ours.dist(x, y), ref.dist(x, y), rtol=1e-5)
        assert torch.allclose(ours.cdist(x, y), ref.dist(x[:, None], y[None]), rtol=1e-5)
        assert torch.allclose(ours.mobius_add(x, y), ref.mobius_add(x, y), rtol=1e-5, atol=1e-6)
        # geoopt's Lorentz uses full coordinates and k = 1/c (<x, x> = -k)
        lor, lref = Lorentz(c), geoopt.Lorentz(k=1.0 / c)
        a, b = lor.expmap0(u * 0.5), lor.expmap0(v * 0.5)
        A, B = lorentz_full(a, c), lorentz_full(b, c)
        assert torch.allclose(lor.dist(a, b), lref.dist(A, B), rtol=1e-7)
        assert torch.allclose(lor.cdist(a, b), lref.dist(A[:, None], B[None]), rtol=1e-6, atol=1e-7)
        tangent0 = torch.cat([torch.zeros(200, 1, dtype=F64), u * 0.5], dim=-1)
        assert torch.allclose(lorentz_full(lor.expmap0(u * 0.5), c), lref.expmap0(tangent0), rtol=1e-7)


def test_distances_match_50_digit_reference() -> None:
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    gen = torch.Generator().manual_seed(7)
    for c in (0.1, 1.0):
        ball, lor = PoincareBall(c, boundary_eps=1e-9), Lorentz(c)
        # up to hyperbolic radius ~12: 1 - c||x||^2 ~ 1e-5, where float64 inputs still carry ~1e-11 relative
        x = ball.expmap0(torch.randn(20, 8, generator=gen, dtype=F64) * 1.5 / math.sqrt(c))
        y = ball.expmap0(torch.randn(20, 8, generator=gen, dtype=F64) * 1.5 / math.sqrt(c))
        y[:5] = x[:5] + 1e-9  # near-coincident pairs
        cm = mpmath.mpf(c)
        exact = []
        for a, b in zip(x.tolist(), y.tolist(), strict=True):
            a_, b_ = [mpmath.mpf(v) for v in a], [mpmath.mpf(v) for v in b]
            d2 = sum((p - q) ** 2 for p, q in zip(a_, b_, strict=True))
            na, nb = sum(p * p for p in a_), sum(q * q for q in b_)
            exact.append(float(mpmath.acosh(1 + 2 * cm * d2 / ((1 - cm * na) * (1 - cm * nb))) / mpmath.sqrt(cm)))
        exact_t = torch.tensor(exact, dtype=F64)
        assert torch.allclose(ball.dist(x, y), exact_t, rtol=1e-8, atol=0)
        assert torch.allclose(ball.cdist(x, y).diagonal(), exact_t, rtol=1e-7, atol=0)
        xl, yl = poincare_to_lorentz(x, c), poincare_to_lorentz(y, c)
        assert torch.allclose(lor.dist(xl, yl), exact_t, rtol=1e-7, atol=0)
        assert torch.allclose(lor.cdist(xl, yl).diagonal(), exact_t, rtol=1e-7, atol=0)


# ---- float32 safety ------------------------------------------------------------------------------
def _boundary_points(n: int, d: int, c: float, radius_frac: float, gen: torch.Generator) -> torch.Tensor:
    direction = torch.nn.functional.normalize(torch.randn(n, d, generator=gen, dtype=F64), dim=-1)
    r = torch.rand(n, 1, generator=gen, dtype=F64) * radius_frac
    r[: n // 4] = radius_frac  # a quarter exactly at the limit radius
    return direction * r / math.sqrt(c)


@pytest.mark.parametrize("c", [0.1, 1.0, 4.0])
def test_float32_poincare_agrees_with_float64(c: float) -> None:
    gen = torch.Generator().manual_seed(1)
    ball = PoincareBall(c)
    x64 = _boundary_points(300, 32, c, 1 - 1e-3, gen)
    y64 = _boundary_points(200, 32, c, 1 - 1e-3, gen)
    x32, y32 = x64.float(), y64.float()
    # reference: float64 evaluation at the float32 inputs
    ref = ball.cdist(x32.double(), y32.double())
    got = ball.cdist(x32, y32)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, rtol=1e-4, atol=0)
    paired = ball.dist(x32[:200], y32)
    assert torch.allclose(paired.double(), ball.dist(x32[:200].double(), y32.double()), rtol=1e-4, atol=0)


@pytest.mark.parametrize("c", [0.1, 1.0, 4.0])
def test_float32_lorentz_agrees_with_float64(c: float) -> None:
    gen = torch.Generator().manual_seed(2)
    lor = Lorentz(c)
    # Lorentz points at the same hyperbolic radius as Poincaré radius (1 - 1e-3)/sqrt(c)
    p64 = _boundary_points(300, 32, c, 1 - 1e-3, gen)
    x32 = poincare_to_lorentz(p64, c).float()
    ref = lor.cdist(x32.double(), x32[:100].double())
    got = lor.cdist(x32, x32[:100]).double()
    off_diag = ~torch.eye(300, 100, dtype=torch.bool)
    assert torch.allclose(got[off_diag], ref[off_diag], rtol=1e-4, atol=0)
    assert (got[~off_diag] < 1e-3).all()  # self-distances: refined, not ~1/sqrt(c) of cancellation
    assert torch.allclose(
        lor.dist(x32[:100], x32[100:200]).double(), lor.dist(x32[:100].double(), x32[100:200].double()), rtol=1e-4
    )


@pytest.mark.parametrize("c", [0.1, 1.0, 4.0])
def test_float32_values_and_gradients_finite_at_extremes(c: float) -> None:
    gen = torch.Generator().manual_seed(3)
    d = 16
    # points up to radius (1 - 1e-7)/sqrt(c), including exactly that radius and coincident pairs
    p = _boundary_points(64, d, c, 1 - 1e-7, gen).float()
    p = torch.cat([p, p[:4], torch.zeros(1, d)]).requires_grad_(True)
    q = torch.cat([p.detach()[4:8], _boundary_points(60, d, c, 1 - 1e-7, gen).float()]).requires_grad_(True)
    ball = PoincareBall(c)
    for out in (ball.cdist(p, q), ball.dist(p[:64], q[:64]), ball.dist(p, p)):
        assert torch.isfinite(out).all()
        gp, gq = torch.autograd.grad(out.sum(), (p, q), allow_unused=True, retain_graph=True)
        assert gp is not None and torch.isfinite(gp).all()
        if gq is not None:
            assert torch.isfinite(gq).all()
    # tangent vectors of norm up to 50/sqrt(c), and the zero vector
    u = torch.randn(64, d, generator=gen)
    u = torch.nn.functional.normalize(u, dim=-1) * torch.linspace(0, 50, 64)[:, None] / math.sqrt(c)
    u.requires_grad_(True)
    for geo in (PoincareBall(c), PoincareBall(c, convention="half"), Lorentz(c)):
        x = geo.expmap0(u)
        assert torch.isfinite(x).all(), geo
        for out in (geo.dist(x[:32], x[32:]), geo.cdist(x, x), geo.logmap0(x)):
            assert torch.isfinite(out).all(), geo
            (g,) = torch.autograd.grad(out.sum(), u, retain_graph=True)
            assert torch.isfinite(g).all(), geo
    lor = Lorentz(c)
    x = lor.expmap0(u)
    for out in (lor.half_aperture(x), lor.oxy_angle(x[:32], x[32:]), lor.oxy_angle(x, x),
                lor.oxy_angle_matrix(x[:32], x[32:])):
        assert torch.isfinite(out).all()
        (g,) = torch.autograd.grad(out.sum(), u, retain_graph=True)
        assert torch.isfinite(g).all()


def test_half_precision_inputs_are_computed_in_float32() -> None:
    x = PoincareBall(0.1).expmap0(torch.randn(8, 4)).half()
    out = PoincareBall(0.1).cdist(x, x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


# ---- curvature, projection, chunking -------------------------------------------------------------
def test_learnable_curvature_is_clamped_and_gets_gradients() -> None:
    lor = Lorentz(1.0, learnable=True)
    assert lor.c_min == pytest.approx(0.1) and lor.c_max == pytest.approx(10.0)
    x = torch.randn(10, 3)
    loss = lor.dist(lor.expmap0(x[:5]), lor.expmap0(x[5:])).sum()
    loss.backward()
    assert lor.log_c.grad is not None and torch.isfinite(lor.log_c.grad)
    with torch.no_grad():
        lor.log_c.fill_(10.0)
    assert float(lor.c.detach()) == pytest.approx(10.0)
    with torch.no_grad():
        lor.log_c.fill_(-10.0)
    assert float(lor.c.detach()) == pytest.approx(0.1)
    # cdist takes the gradient path when the curvature is learnable
    y = lor.cdist(lor.expmap0(x), lor.expmap0(x))
    assert y.requires_grad


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_curvature_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="curvature"):
        PoincareBall(bad)


def test_project_keeps_points_inside_ball() -> None:
    ball = PoincareBall(0.1)
    x = torch.randn(100, 8) * 100
    p = ball.project(x)
    assert (p.norm(dim=-1) <= (1 - 1e-3) / math.sqrt(0.1) + 1e-5).all()
    assert ball.contains(p).all()
    assert not ball.contains(x).all()


@pytest.mark.parametrize(
    "geo", [PoincareBall(0.1), PoincareBall(1.0), Lorentz(0.1), Lorentz(2.0), Sphere(), Euclidean()]
)
def test_float32_cdist_near_coincident_points_keep_relative_precision(geo) -> None:
    """Pairs at tiny distances far from the origin: the refinement pass recomputes them stably."""
    gen = torch.Generator().manual_seed(5)
    c = float(geo.c) if hasattr(geo, "log_c") else 1.0
    center = geo.expmap0(
        torch.nn.functional.normalize(torch.randn(20, 16, generator=gen, dtype=F64), dim=-1) * 3.5 / math.sqrt(c)
    )
    jitter = geo.expmap0(geo.logmap0(center) + 1e-3 * torch.randn(20, 16, generator=gen, dtype=F64) / math.sqrt(c))
    x32, y32 = center.float(), jitter.float()
    ref = geo.dist(x32.double()[:, None], y32.double()[None])
    got = geo.cdist(x32, y32).double()
    assert torch.allclose(got, ref, rtol=1e-3, atol=0)
    if isinstance(geo, (PoincareBall, Lorentz)):
        # without refinement the matrix-product form visibly loses these small distances
        unrefined = geo.cdist(x32, y32, refine=False).double()
        assert not torch.allclose(unrefined, ref, rtol=1e-3, atol=0)


def test_cdist_chunking_and_workspace_are_exact() -> None:
    gen = torch.Generator().manual_seed(4)
    for geo in (PoincareBall(0.3), Lorentz(0.3), Sphere(), Euclidean()):
        x = geo.expmap0(torch.randn(37, 6, generator=gen))
        y = geo.expmap0(torch.randn(23, 6, generator=gen))
        whole = geo.cdist(x, y, chunk_rows=1000)
        # BLAS may block a product differently per chunk size: agreement to float32 rounding
        for rows in (1, 5, 36):
            assert torch.allclose(geo.cdist(x, y, chunk_rows=rows), whole, rtol=1e-6, atol=1e-6)
        assert torch.allclose(geo.cdist(x, y, workspace_bytes=1), whole, rtol=1e-6, atol=1e-6)


def test_cdist_shape_errors() -> None:
    with pytest.raises(ValueError, match="dimension mismatch"):
        Euclidean().cdist(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="2-d"):
        Euclidean().cdist(torch.zeros(3), torch.zeros(3))


def test_sphere_distance_ranks_like_cosine() -> None:
    s = Sphere()
    x = s.project(torch.randn(20, 5, dtype=F64))
    d = s.cdist(x, x)
    assert torch.allclose(d, torch.arccos((x @ x.T).clamp(-1, 1)), atol=1e-6)


def test_get_geometry() -> None:
    assert isinstance(get_geometry("poincare", c=0.2), PoincareBall)
    assert isinstance(get_geometry("cosine"), Sphere)
    with pytest.raises(ValueError, match="unknown geometry"):
        get_geometry("klein")


def test_feature_clip() -> None:
    u = torch.randn(100, 8) * 10
    clipped = feature_clip(u, 2.3)
    assert (clipped.norm(dim=-1) <= 2.3 + 1e-6).all()
    small = torch.full((1, 8), 0.1)
    assert torch.equal(feature_clip(small, 2.3), small)
    with pytest.raises(ValueError):
        feature_clip(u, 0.0)


@pytest.mark.parametrize("geo", [PoincareBall(0.1), Lorentz(1.0), Sphere(), Euclidean()], ids=repr)
def test_dist_candidates_matches_paired_dist(geo) -> None:
    gen = torch.Generator().manual_seed(9)
    y = geo.expmap0(torch.randn(300, 16, generator=gen) * 0.8)
    x = torch.cat([y[:5], geo.expmap0(torch.randn(15, 16, generator=gen))])  # first 5 coincide with y[:5]
    cand = torch.randint(0, 300, (20, 7), generator=gen)
    cand[:5, 0] = torch.arange(5)  # coincident pairs exercise the refinement
    got = geo.dist_candidates(x, y, cand, cache=geo.gallery_cache(y))
    ref = geo.dist(x.double()[:, None], y.double()[cand])
    assert torch.allclose(got.double(), ref, rtol=1e-5, atol=1e-6)
    assert (got[:5, 0] < 1e-3).all()


@pytest.mark.parametrize("geo", [PoincareBall(0.3), Lorentz(0.7), Sphere(), Euclidean()], ids=repr)
def test_cdist_gradients_match_paired_dist(geo) -> None:
    gen = torch.Generator().manual_seed(11)
    x0 = geo.expmap0(torch.randn(6, 4, generator=gen, dtype=F64))
    y = geo.expmap0(torch.randn(5, 4, generator=gen, dtype=F64))
    w = torch.randn(6, 5, generator=gen, dtype=F64)
    x1 = x0.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad((geo.cdist(x1, y) * w).sum(), x1)
    x2 = x0.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad((geo.dist(x2[:, None], y[None]) * w).sum(), x2)
    if isinstance(geo, Sphere):
        # the two formulas agree on the sphere only: compare the tangent (Riemannian) components
        g1, g2 = (g - (g * x0).sum(-1, keepdim=True) * x0 for g in (g1, g2))
    assert torch.allclose(g1, g2, rtol=1e-6, atol=1e-8)


def test_oxy_angle_matrix_is_oxy_angle_of_every_pair() -> None:
    lor = Lorentz(0.7)
    gen = torch.Generator().manual_seed(3)
    x = lor.expmap0(torch.randn(7, 5, generator=gen, dtype=torch.float64))
    y = lor.expmap0(2 * torch.randn(9, 5, generator=gen, dtype=torch.float64))
    m = lor.oxy_angle_matrix(x, y)
    assert m.shape == (7, 9)
    torch.testing.assert_close(m, lor.oxy_angle(x[:, None, :], y[None, :, :]), rtol=1e-10, atol=1e-10)


def test_similarity_matrix_is_minus_cdist_and_the_cosine_on_the_sphere() -> None:
    from hypalign.geometry import Euclidean, Lorentz, PoincareBall, Sphere

    gen = torch.Generator().manual_seed(3)
    u, v = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    for g in (Euclidean(), Lorentz(0.7), PoincareBall(1.3)):
        x, y = g.expmap0(0.5 * u), g.expmap0(0.5 * v)
        torch.testing.assert_close(g.similarity_matrix(x, y), -g.cdist(x, y, refine=False))
        torch.testing.assert_close(g.similarity(x[:, None], y[None]), -g.dist(x[:, None], y[None]))
    s = Sphere()
    x, y = s.expmap0(u), s.expmap0(v)
    torch.testing.assert_close(s.similarity_matrix(x, y), x @ y.T)
    torch.testing.assert_close(s.similarity(x[:, None], y[None]), x @ y.T)


def test_cones_are_the_same_in_the_lorentz_model_and_the_poincare_ball() -> None:
    """Half-aperture and exterior angle by MERU's formulas (eqs. 7-8) in float64, and the Poincaré images of the
    same points give the same numbers (the isometry fixes the origin)."""
    from hypalign.geometry import Euclidean, Lorentz, PoincareBall, Sphere, cones
    from hypalign.geometry.convert import lorentz_to_poincare

    c = 0.8
    lor, ball = Lorentz(c), PoincareBall(c)
    gen = torch.Generator().manual_seed(5)
    g = lor.expmap0(torch.randn(7, 3, generator=gen, dtype=torch.float64))
    s = lor.expmap0(2 * torch.randn(7, 3, generator=gen, dtype=torch.float64))
    # by hand: aper = asin(2K / (sqrt(c) |g|)) clamped; ext from the hyperbolic law of cosines
    aper = torch.asin((2 * 0.1 / (c**0.5 * g.norm(dim=-1) + 1e-8)).clamp(-1 + 1e-7, 1 - 1e-7))
    gt, st = torch.sqrt(1 / c + (g * g).sum(-1)), torch.sqrt(1 / c + (s * s).sum(-1))
    cxy = c * ((g * s).sum(-1) - gt * st)
    ext = torch.acos(((st + gt * cxy) / (g.norm(dim=-1) * torch.sqrt(cxy**2 - 1) + 1e-8)).clamp(-1 + 1e-7, 1 - 1e-7))
    torch.testing.assert_close(cones.half_aperture(g, lor), aper)
    torch.testing.assert_close(cones.exterior_angle(g, s, lor), ext)
    pg, ps = lorentz_to_poincare(g, c), lorentz_to_poincare(s, c)
    torch.testing.assert_close(cones.half_aperture(pg, ball), aper)
    torch.testing.assert_close(cones.exterior_angle(pg, ps, ball), ext)
    torch.testing.assert_close(cones.cone_violation(pg, ps, ball), (ext - aper).clamp_min(0))
    m = cones.cone_margin_matrix(g, s, lor)
    torch.testing.assert_close(m, aper[None, :].float() - cones.exterior_angle(g[None], s[:, None], lor).float())
    assert cones.has_cones(lor) and cones.has_cones(ball)
    for other in (Sphere(), Euclidean()):
        assert not cones.has_cones(other)
        with pytest.raises(ValueError, match="hyperbolic"):
            cones.half_aperture(g, other)


def _spread(kind: str, n: int, d: int, c: float, g: torch.Generator) -> torch.Tensor:
    """Poincaré points of one radius distribution (float64): the spreads real embeddings have (issue 29)."""
    u = torch.randn(n, d, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    r = {"fixed": lambda: torch.full((n, 1), 0.3, dtype=torch.float64),
         "uniform": lambda: 0.95 * torch.rand(n, 1, generator=g, dtype=torch.float64),
         "boundary": lambda: 1 - 10 ** (-4 * torch.rand(n, 1, generator=g, dtype=torch.float64)),
         "origin": lambda: 1e-3 * torch.rand(n, 1, generator=g, dtype=torch.float64)}[kind]()
    return u * r / c**0.5


@pytest.mark.parametrize("kind", ["fixed", "uniform", "boundary", "origin", "near-duplicates", "clustered"])
@pytest.mark.parametrize("model", ["poincare", "lorentz", "euclidean", "sphere"])
def test_float32_cdist_keeps_1e4_relative_precision_on_every_radius_spread(kind: str, model: str) -> None:
    """Against float64 on the same float32 points: every pair within 1e-4 relative, near-identical pairs included,
    whatever the spread of radii; and only pairs that need it are recomputed (not 7.7 % of a uniform spread)."""
    from hypalign.geometry import Euclidean, Lorentz, PoincareBall, Sphere
    from hypalign.geometry.convert import poincare_to_lorentz

    c = 0.1
    g = torch.Generator().manual_seed(11)
    geo = {"poincare": PoincareBall(c), "lorentz": Lorentz(c), "euclidean": Euclidean(), "sphere": Sphere()}[model]
    x = _spread("uniform" if kind in ("near-duplicates", "clustered") else kind, 300, 32, c, g)
    y = _spread("uniform" if kind in ("near-duplicates", "clustered") else kind, 200, 32, c, g)
    if kind == "near-duplicates":  # every y has a twin in x at a relative distance of 1e-6 .. 1e-3
        y[:100] = x[:100] * (1 + 10 ** (-3 - 3 * torch.rand(100, 1, generator=g, dtype=torch.float64)))
    if kind == "clustered":  # 4 clusters: every row has ~50-75 near-duplicates
        centres = _spread("uniform", 4, 32, c, g)
        x = centres[torch.arange(300) % 4] + 1e-4 * torch.randn(300, 32, generator=g, dtype=torch.float64)
        y = centres[torch.arange(200) % 4] + 1e-4 * torch.randn(200, 32, generator=g, dtype=torch.float64)
    if model == "lorentz":
        x, y = poincare_to_lorentz(x, c), poincare_to_lorentz(y, c)
    elif model == "sphere":
        x, y = geo.project(x + 1e-9), geo.project(y + 1e-9)
    elif model == "poincare":
        x, y = geo.project(x), geo.project(y)
    x32, y32 = x.float(), y.float()
    ref = geo.cdist(x32.double(), y32.double())
    got = geo.cdist(x32, y32).double()
    rel = ((got - ref).abs() / ref.clamp_min(1e-300))
    assert float(rel.max()) <= 1e-4, (kind, model, float(rel.max()))
    if model == "poincare" and kind in ("uniform", "fixed", "boundary"):
        flagged = geo._unreliable(geo._cdist_factors(x32, y32)[0] @ geo._cdist_factors(x32, y32)[1].T,
                                  *geo._cdist_bound_factors(x32, y32), geo._cdist_bound_factors(x32, y32)[1].amax(0))
        n_flagged = 0 if flagged is None else flagged[0].numel()
        assert n_flagged <= 0.01 * x.shape[0] * y.shape[0]


@pytest.mark.parametrize("geo", [PoincareBall(0.1), Lorentz(0.1), Lorentz(2.0), Sphere(), Euclidean()])
def test_exact_pairs_from_pair_moments_equal_float64_dist(geo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The numba pair-moment pass (float64 |x-y|^2, (x-y).(x+y), |x|^2, |y|^2 from float32 coordinates) gives the
    paired formula's float64 value on the same float32 points, near-duplicates and far pairs alike; the other route
    (gathered rows, and the dense float64 re-product for the rows with ~50 flags: what a GPU takes) keeps 1e-4."""
    g = torch.Generator().manual_seed(3)
    c = float(geo.c) if hasattr(geo, "log_c") else 1.0
    centres = _spread("uniform", 3, 24, c, g)
    x = centres[torch.arange(90) % 3] + 1e-5 * torch.randn(90, 24, generator=g, dtype=F64)
    y = torch.cat([centres[torch.arange(150) % 3] + 1e-5 * torch.randn(150, 24, generator=g, dtype=F64),
                   _spread("boundary", 40, 24, c, g)])
    if isinstance(geo, Lorentz):
        from hypalign.geometry.convert import poincare_to_lorentz

        x, y = poincare_to_lorentz(x, c), poincare_to_lorentz(y, c)
    else:
        x, y = geo.project(x), geo.project(y)
    x32, y32 = x.float(), y.float()
    rows = torch.randint(0, 90, (500,), generator=g)
    cols = torch.randint(0, 190, (500,), generator=g)
    assert geo._moments_on_cpu(x32, y32)
    if isinstance(geo, PoincareBall):  # a point on the boundary (1 - c|x|^2 <= 0 in float64): floored as dist floors it
        x32[0] = torch.nn.functional.normalize(x32[0], dim=0) * (1.0001 / c**0.5)
    got = geo._exact_pairs(x32, y32, rows, cols, F64)
    ref = geo.dist(x32.double()[rows], y32.double()[cols])
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    monkeypatch.setattr(type(geo), "_moments_on_cpu", lambda self, a, b: False)
    ref_all = geo.cdist(x32.double(), y32.double())
    rel = (geo.cdist(x32, y32).double() - ref_all).abs() / ref_all.clamp_min(1e-300)
    assert float(rel.max()) <= 1e-4


def test_fused_hyperbolic_finish_against_float64_and_the_separate_test() -> None:
    """The one-pass kernel: ``scale * arccosh(1 + 2q)`` within 6e-6 of float64 for every q the refinement keeps
    (3.6e-5 .. 2.5e38), 0 for q <= 0; with the test on, exactly the entries ``count_unreliable`` counts are -1 and
    ``locate_flagged`` returns exactly them."""
    import numba

    from hypalign.geometry._cdist_kernels import count_unreliable, hyperbolic_finish, locate_flagged

    q = np.concatenate([np.logspace(np.log10(3.6e-5), 38.4, 4000), [0.0, -1e-7, 1e-30]]).astype(np.float32)
    block = q.reshape(1, -1).copy()
    buf = np.empty((numba.config.NUMBA_NUM_THREADS, block.shape[1]), dtype=np.float32)
    count = np.zeros(1, dtype=np.int64)
    dummy_x, dummy_y = np.zeros((1, 2), np.float32), np.zeros((2, block.shape[1]), np.float32)
    hyperbolic_finish(block, dummy_x, dummy_y, 0.0, 0.0, 0.5, False, count, buf)
    ref = 0.5 * np.arccosh(1.0 + 2.0 * np.maximum(q.astype(np.float64), 0.0))
    ok = q >= 3.6e-5
    assert np.max(np.abs(block[0, ok] - ref[ok]) / ref[ok]) < 6e-6
    assert block[0, -3] == 0.0 and block[0, -2] == 0.0 and count[0] == 0
    assert block[0, -1] == 0.0  # q = 1e-30, far below the floor: 1 + 2q rounds to 1 (why such entries are recomputed)
    rng = np.random.default_rng(3)
    qb = (10.0 ** rng.uniform(-7, 3, (64, 300))).astype(np.float32)
    bx = rng.uniform(0, 2, (64, 2)).astype(np.float32)
    by_t = rng.uniform(0, 2, (2, 300)).astype(np.float32)
    thr, floor = 1e-2, 1e-5
    expected = np.zeros(64, dtype=np.int64)
    count_unreliable(qb, bx, by_t, thr, floor, expected)
    bad = (qb < thr * (bx.astype(np.float64) @ by_t)) | (qb < floor)
    out, count = qb.copy(), np.zeros(64, dtype=np.int64)
    buf = np.empty((numba.config.NUMBA_NUM_THREADS, 300), dtype=np.float32)
    hyperbolic_finish(out, bx, by_t, thr, floor, 1.0, True, count, buf)
    np.testing.assert_array_equal(count, expected)
    np.testing.assert_array_equal(count, bad.sum(1))
    assert (out[bad] == -1).all() and (out[~bad] > 0).all()
    rows, cols = np.empty(count.sum(), np.int64), np.empty(count.sum(), np.int64)
    locate_flagged(out, count, np.cumsum(count) - count, rows, cols)
    np.testing.assert_array_equal(np.stack([rows, cols]), np.stack(np.nonzero(bad)))
