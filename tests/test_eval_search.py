"""Metrics and exact search: brute force, pytorch-metric-learning and scikit-learn as oracles, tiny hand cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.errors import InputError
from hypalign.eval.classification import zero_shot_accuracy
from hypalign.eval.function import aupr_macro, aupr_micro, fmax, propagate
from hypalign.eval.retrieval import mean_reciprocal_rank, relevant_ranks, retrieval_metrics
from hypalign.geometry import Euclidean, Lorentz, PoincareBall, Sphere
from hypalign.search import knn, mips_vectors
from hypalign.search.hnsw import HNSWIndex
from hypalign.search.index import SearchIndex, build_index

GEOMETRIES = [PoincareBall(0.1), PoincareBall(1.0), Lorentz(0.5), Lorentz(2.0), Sphere(), Euclidean()]


def clustered(n: int, dim: int, n_classes: int, geometry, seed: int = 0, spread: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=g)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    x = centers[labels] + spread * torch.randn(n, dim, generator=g)
    return geometry.expmap0(x * 0.5).float(), labels.numpy()


# ---- exact search --------------------------------------------------------------------------------
@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: repr(g))
@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_knn_matches_brute_force(geo, backend: str) -> None:
    x, _ = clustered(300, 16, 10, geo)
    q, _ = clustered(50, 16, 10, geo, seed=1)
    dist, idx = knn(q, x, geo, k=10, backend=backend)
    ref = geo.dist(q.double()[:, None], x.double()[None])
    ref_d, ref_i = ref.sort(dim=1)
    assert torch.equal(idx, ref_i[:, :10])
    assert torch.allclose(dist.double(), ref_d[:, :10], rtol=1e-5, atol=1e-6)
    # queries searched against themselves, self excluded
    dist, idx = knn(x, x, geo, k=5, exclude_self=True, backend=backend)
    ref = geo.dist(x.double()[:, None], x.double()[None])
    ref.fill_diagonal_(float("inf"))
    assert torch.equal(idx, ref.sort(dim=1).indices[:, :5])
    assert not (idx == torch.arange(300)[:, None]).any()


def test_float64_deep_poincare_points_are_searched_exactly_and_indexed_in_float64(tmp_path: Path) -> None:
    """Points out to geodesic radius ~20 (a float64 hierarchy embedding's deep levels): knn on float64 input
    uses the geometry's own distances and agrees with brute force; an index keeps them float64 (float32 would
    round them onto the boundary), shallow points stay float32."""
    from hypalign.data.hierarchy import Hierarchy
    from hypalign.models.hierarchy import hierarchy_init

    names, edges, frontier = ["r"], [], [0]
    for _ in range(10):  # a binary tree, 10 levels, 2 geodesic units per level
        nxt = []
        for p in frontier:
            for _ in range(2):
                names.append(f"n{len(names)}")
                edges.append((len(names) - 1, p))
                nxt.append(len(names) - 1)
        frontier = nxt
    h = Hierarchy(names, np.asarray(edges))
    x = hierarchy_init(h.parents(), h.topological_order(), 4, "poincare", step=2.0, dtype=torch.float64)
    geo = PoincareBall(1.0)
    assert float(geo.dist(x, torch.zeros(1, 4, dtype=torch.float64)).max()) > 19
    q = x[::37]
    dist, idx = knn(q, x, geo, k=8)
    ref = geo.dist(q[:, None], x[None])
    ref_d, ref_i = ref.sort(dim=1)
    assert torch.equal(idx, ref_i[:, :8])
    torch.testing.assert_close(dist, ref_d[:, :8], rtol=1e-9, atol=1e-12)
    dist, idx = knn(x, x, geo, k=3, exclude_self=True)
    assert not (idx == torch.arange(len(x))[:, None]).any()
    build_index(x.numpy(), "poincare", tmp_path / "deep", c=1.0)
    index = SearchIndex.open(tmp_path / "deep")
    assert index.vectors.dtype == torch.float64
    d2, i2 = index.search(q.numpy(), k=8)
    np.testing.assert_array_equal(i2, ref_i[:, :8].numpy())
    np.testing.assert_allclose(d2, ref_d[:, :8].numpy(), rtol=1e-9)
    build_index((x[:7] * 0.5).numpy(), "poincare", tmp_path / "shallow", c=1.0)
    assert SearchIndex.open(tmp_path / "shallow").vectors.dtype == torch.float32


def test_lorentz_reduction_is_exact_ranking() -> None:
    """Geodesic order = descending inner product of [x, x_t] with [q, -q_t]."""
    lor = Lorentz(0.7)
    x = lor.expmap0(torch.randn(200, 8, dtype=torch.float64) * 2)
    q = lor.expmap0(torch.randn(20, 8, dtype=torch.float64) * 2)
    ip = mips_vectors(q, lor, "query") @ mips_vectors(x, lor, "gallery").T
    assert torch.allclose(ip, lor.inner(q[:, None], x[None]), rtol=1e-12)
    assert torch.equal(ip.argsort(dim=1, descending=True), lor.cdist(q, x).argsort(dim=1))


def test_knn_small_gallery_pads_and_validates() -> None:
    geo = Euclidean()
    x = torch.randn(3, 2)
    d, i = knn(x, x, geo, k=5, exclude_self=True)
    assert (i[:, 2:] == -1).all() and torch.isinf(d[:, 2:]).all()
    with pytest.raises(ValueError, match="expected"):
        knn(torch.randn(3, 2), torch.randn(3, 4), geo, k=1)
    with pytest.raises(ValueError, match="exclude_self"):
        knn(torch.randn(3, 2), torch.randn(4, 2), geo, k=1, exclude_self=True)


def test_hnsw_recall_against_exact() -> None:
    geo = Lorentz(1.0)
    x, _ = clustered(3000, 16, 50, geo)
    q, _ = clustered(200, 16, 50, geo, seed=3)
    _, exact = knn(q, x, geo, k=10)
    _, approx = HNSWIndex(x, geo).search(q, k=10)
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(approx, exact, strict=True)])
    assert recall >= 0.95


# ---- retrieval metrics ---------------------------------------------------------------------------
def test_recall_map_r_hand_case() -> None:
    # 1-d Euclidean points; labels a a b b a
    x = torch.tensor([[0.0], [1.0], [1.4], [3.0], [10.0]])
    y = np.array(["a", "a", "b", "b", "a"])
    m = retrieval_metrics(x, y, Euclidean(), ks=(1, 2))
    # nearest (self excluded): 0->1 (a, hit), 1->2 (b, miss), 2->1 (a, miss), 3->2 (b, hit), 4->3 (b, miss)
    assert m["recall@1"] == pytest.approx(2 / 5) and m["precision@1"] == pytest.approx(2 / 5)
    # top-2: 0:{1,2} hit; 1:{2,0} hit; 2:{1,0} miss; 3:{2,1} hit; 4:{3,2} miss
    assert m["recall@2"] == pytest.approx(3 / 5)
    # R: a-queries have R=2, b-queries R=1
    # q0 (R=2): ranks 1(a) 2(b) -> AP@R = (1/1)/2 = 0.5 ; q1: ranks 2(b) 0(a) -> (1/2)/2 = 0.25
    # q2 (R=1): 1(a) miss -> 0 ; q3 (R=1): 2(b) hit -> 1 ; q4 (R=2): 3(b),2(b) -> 0
    assert m["map@r"] == pytest.approx((0.5 + 0.25 + 0 + 1 + 0) / 5)
    assert m["r-precision"] == pytest.approx((0.5 + 0.5 + 0 + 1 + 0) / 5)
    # first relevant: q0 1 ; q1 2 (0 at rank 2) ; q2 3 (3 at rank 3: 1,0,3) ; q3 1 ; q4 ranks 3,2,1,0 -> 1 at 3
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 + 1 / 3) / 5)


def test_separate_query_and_gallery_and_missing_labels() -> None:
    g = torch.tensor([[0.0], [1.0], [2.0]])
    q = torch.tensor([[0.1], [1.9], [5.0]])
    m = retrieval_metrics(q, ["x", "z", "w"], Euclidean(), gallery=g, gallery_labels=["x", "y", "z"], ks=(1, 2))
    assert m["n_queries"] == 2 and m["n_queries_without_relevant"] == 1
    assert m["recall@1"] == 1.0 and m["mrr"] == 1.0


@pytest.mark.parametrize("geo", [Sphere(), PoincareBall(0.3), Lorentz(1.0)], ids=repr)
def test_agrees_with_pytorch_metric_learning(geo) -> None:
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    from hypalign.eval.pml import GeometryDistance

    x, y = clustered(400, 12, 8, geo, spread=0.8)
    dist = CosineSimilarity() if isinstance(geo, Sphere) else GeometryDistance(geo)
    include = ("precision_at_1", "mean_average_precision_at_r", "r_precision", "mean_reciprocal_rank")
    calc = AccuracyCalculator(include=include, k=None, knn_func=CustomKNN(dist))
    ref = calc.get_accuracy(x, torch.from_numpy(y))
    ours = retrieval_metrics(x, y, geo)
    assert ours["precision@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)
    assert ours["r-precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["mrr"] == pytest.approx(ref["mean_reciprocal_rank"], abs=1e-6)


def test_relevant_ranks_and_mrr_variants() -> None:
    geo = PoincareBall(1.0)
    x, y = clustered(120, 6, 5, geo, spread=1.0)
    q = x[:30]
    relevant = [np.flatnonzero((y == y[i]) & (np.arange(120) != i)) for i in range(30)]
    raw = relevant_ranks(q, x, relevant, geo, exclude=np.arange(30))
    flt = relevant_ranks(q, x, relevant, geo, exclude=np.arange(30), filtered=True)
    d = geo.dist(q.double()[:, None], x.double()[None]).numpy()
    for i in range(30):
        row = d[i].copy()
        row[i] = np.inf
        for r_raw, r_flt, p in zip(raw[i], flt[i], relevant[i], strict=True):
            assert r_raw == 1 + np.sum(row < row[p])
            neg = np.setdiff1d(np.arange(120), np.append(relevant[i], i))
            assert r_flt == 1 + np.sum(row[neg] < row[p])
    hand = [np.array([2, 5]), np.array([1]), np.array([], dtype=np.int64)]  # the empty one is skipped
    assert mean_reciprocal_rank(hand, "first") == pytest.approx((1 / 2 + 1) / 2)
    assert mean_reciprocal_rank(hand, "all") == pytest.approx(((1 / 2 + 1 / 5) / 2 + 1) / 2)
    with pytest.raises(ValueError, match="variant"):
        mean_reciprocal_rank(hand, "median")
    m = retrieval_metrics(x, y, geo, mrr_all=True)
    flt_all = relevant_ranks(
        x,
        x,
        [np.flatnonzero((y == y[i]) & (np.arange(120) != i)) for i in range(120)],
        geo,
        exclude=np.arange(120),
        filtered=True,
    )
    assert m["mrr_all"] == pytest.approx(mean_reciprocal_rank(flt_all, "all"))
    first_all = relevant_ranks(
        x, x, [np.flatnonzero((y == y[i]) & (np.arange(120) != i)) for i in range(120)], geo, exclude=np.arange(120)
    )
    assert m["mrr"] == pytest.approx(mean_reciprocal_rank(first_all, "first"))


def test_mrr_falls_back_beyond_the_knn_list() -> None:
    # query 0's only relevant item is the farthest point: its rank comes from the exact count
    x = torch.arange(12, dtype=torch.float32)[:, None]
    y = np.array(["a"] + ["b"] * 10 + ["a"])
    m = retrieval_metrics(x, y, Euclidean(), ks=(1,), metrics=("mrr",))
    # query 0: 'a' at rank 11; query 11: 'a' at rank 11; b-queries: rank 1
    assert m["mrr"] == pytest.approx((2 / 11 + 10) / 12)


# ---- classification and function prediction ------------------------------------------------------
def test_zero_shot_accuracy() -> None:
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[0.9, 0.1], [0.1, 0.9], [-0.8, 0.3], [0.2, 0.8], [0.7, -0.1]])
    y = np.array([0, 1, 2, 0, 0])
    acc = zero_shot_accuracy(x, y, classes, Sphere())
    assert acc["accuracy_micro"] == pytest.approx(4 / 5)
    assert acc["accuracy_macro"] == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_aupr_matches_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    truth = rng.random((50, 20)) < 0.2
    scores = truth * 0.3 + rng.random((50, 20))
    assert aupr_micro(scores, truth) == pytest.approx(average_precision_score(truth.ravel(), scores.ravel()))
    cols = [t for t in range(20) if truth[:, t].any()]
    ref = np.mean([average_precision_score(truth[:, t], scores[:, t]) for t in cols])
    assert aupr_macro(scores, truth) == pytest.approx(ref)


def test_fmax_hand_case_and_propagation() -> None:
    truth = np.array([[1, 1, 0], [0, 1, 1]])
    scores = np.array([[0.9, 0.2, 0.0], [0.0, 0.8, 0.6]])
    r = fmax(scores, truth)
    # 0.01 <= t <= 0.2: p1 predicts {0, 1}, p2 {1, 2}: precision 1, recall 1 -> F = 1 (first such t kept)
    assert r.fmax == pytest.approx(1.0) and r.threshold == pytest.approx(0.01) and r.coverage == 1.0
    r = fmax(scores, truth, thresholds=np.array([0.7]))
    # p1 predicts {0} (1/1, recall 1/2), p2 predicts {1} (1/1, recall 1/2): P = 1, R = 0.5
    assert r.fmax == pytest.approx(2 / 3) and r.precision == 1.0 and r.recall == 0.5
    r = fmax(scores, truth, thresholds=np.array([0.85]))  # only p1 covered
    assert r.coverage == 0.5 and r.precision == 1.0 and r.recall == pytest.approx(0.25)
    assert fmax(scores, truth, thresholds="all").fmax == pytest.approx(1.0)
    # term 2 is the parent of 0 and 1: labels and scores propagate upward by max
    anc = [[2], [2], []]
    p = propagate(np.array([[0.9, 0.2, 0.1], [0.0, 0.3, 0.0]]), anc)
    assert np.allclose(p[:, 2], [0.9, 0.3])
    assert propagate(np.array([[1, 0, 0]]), anc).tolist() == [[1, 0, 1]]


# ---- pytorch-metric-learning losses with a hyperbolic distance -----------------------------------
def test_pml_triplet_loss_with_poincare_distance() -> None:
    from pytorch_metric_learning.losses import TripletMarginLoss

    from hypalign.eval.pml import PoincareDistance

    ball = PoincareBall(0.5)
    x = ball.expmap0(torch.randn(12, 4, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    loss = TripletMarginLoss(margin=0.5, distance=PoincareDistance(c=0.5))(x, y)
    d = ball.dist(x[:, None], x[None])
    vals = []
    for a in range(12):
        for p in range(12):
            for n in range(12):
                if a != p and y[a] == y[p] and y[n] != y[a]:
                    vals.append(torch.relu(d[a, p] - d[a, n] + 0.5))
    vals_t = torch.stack(vals)
    manual = vals_t[vals_t > 0].mean()  # PML's AvgNonZeroReducer
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(x.grad).all()


# ---- index files and the CLI ---------------------------------------------------------------------
runner = CliRunner()


def test_index_build_search_roundtrip(tmp_path: Path) -> None:
    geo = Lorentz(0.5)
    x, _ = clustered(200, 8, 5, geo)
    q = x[:7] + 0.001
    np.save(tmp_path / "g.npy", x.numpy())
    np.save(tmp_path / "q.npy", q.numpy())
    (tmp_path / "ids.txt").write_text("\n".join(f"item{i}" for i in range(200)) + "\n")
    res = runner.invoke(
        app,
        [
            "index",
            "build",
            str(tmp_path / "g.npy"),
            "--geometry",
            "lorentz",
            "--c",
            "0.5",
            "-o",
            str(tmp_path / "idx"),
            "--ids",
            str(tmp_path / "ids.txt"),
            "--hnsw",
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta == {
        "geometry": "lorentz",
        "c": 0.5,
        "dim": 8,
        "count": 200,
        "hnsw": True,
        "format": "hypalign-index",
        "version": 1,
    }
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), str(tmp_path / "q.npy"), "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    _, ref = knn(q, x, geo, k=3)
    assert [[h["id"] for h in row["neighbors"]] for row in out] == [[f"item{j}" for j in r] for r in ref.tolist()]
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), str(tmp_path / "q.npy"), "-k", "2"])
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "query,rank,id,distance" and len(lines) == 1 + 7 * 2 and lines[1].startswith("0,1,item0,")
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), str(tmp_path / "q.npy"), "--approximate"])
    assert res.exit_code == 0


def test_index_errors(tmp_path: Path) -> None:
    ball = PoincareBall(1.0)
    x = ball.expmap0(torch.randn(20, 4)).numpy()
    build_index(x, "poincare", tmp_path / "idx", c=1.0)
    with pytest.raises(InputError, match="built for geometry 'poincare', not 'lorentz'"):
        SearchIndex.open(tmp_path / "idx", geometry="lorentz")
    np.save(tmp_path / "q3.npy", np.zeros((2, 3)))
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), str(tmp_path / "q3.npy")])
    assert res.exit_code == 2 and "index has dimension 4, queries have 3" in res.stderr
    np.save(tmp_path / "out.npy", np.array([[0.1, 0, 0, 0], [2.0, 0, 0, 0]]))
    res = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), str(tmp_path / "out.npy")])
    assert res.exit_code == 2 and "row 1 lies outside the Poincaré ball" in " ".join(res.stderr.split())
    res = runner.invoke(app, ["index", "search", str(tmp_path), str(tmp_path / "q3.npy")])
    assert res.exit_code == 2 and "not a hypalign index" in res.stderr
    # --c defaults to 1.0 as everywhere else (issue 29): these points are outside the unit ball, and say so
    res = runner.invoke(
        app, ["index", "build", str(tmp_path / "out.npy"), "--geometry", "poincare", "-o", str(tmp_path / "i2")]
    )
    assert res.exit_code == 2 and "row 1 lies outside the Poincaré ball" in " ".join(res.stderr.split())
    np.save(tmp_path / "in.npy", np.array([[0.1, 0, 0, 0], [0.5, 0, 0, 0]]))
    res = runner.invoke(app, ["index", "build", str(tmp_path / "in.npy"), "--geometry", "poincare", "-o",
                              str(tmp_path / "i2")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "i2" / "index.json").read_text())["c"] == 1.0
    res = runner.invoke(app, ["index", "build", str(tmp_path / "in.npy"), "--geometry", "poincare", "--c", "0",
                              "-o", str(tmp_path / "i4")])
    assert res.exit_code == 2 and "needs a curvature --c > 0, got 0.0" in res.stderr
    with pytest.raises(InputError, match="2 ids for 20 embeddings"):
        build_index(x, "poincare", tmp_path / "i3", c=1.0, ids=["a", "b"])
    assert not (tmp_path / "i3" / "index.json").exists()


def test_eval_retrieval_cli(tmp_path: Path) -> None:
    geo = PoincareBall(0.1)
    x, y = clustered(150, 8, 6, geo)
    np.save(tmp_path / "e.npy", x.numpy())
    (tmp_path / "labels.txt").write_text("\n".join(f"class{v}" for v in y) + "\n")
    base = ["eval", "retrieval", str(tmp_path / "e.npy"), str(tmp_path / "labels.txt"), "--geometry", "poincare"]
    res = runner.invoke(app, [*base, "--c", "0.1", "--k", "1,5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ref = retrieval_metrics(x, y, geo, ks=(1, 5))
    for key in ("recall@1", "recall@5", "map@r", "mrr", "precision@1", "r-precision"):
        assert out[key] == pytest.approx(ref[key])
    res = runner.invoke(app, [*base, "--c", "0.1"])
    assert res.exit_code == 0 and "map@r" in res.stdout
    (tmp_path / "short.txt").write_text("a\nb\n")
    res = runner.invoke(
        app, ["eval", "retrieval", str(tmp_path / "e.npy"), str(tmp_path / "short.txt"), "--geometry", "sphere"]
    )
    assert res.exit_code == 2 and "2 labels for 150 embeddings" in res.stderr
