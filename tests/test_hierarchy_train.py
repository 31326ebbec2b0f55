"""Hierarchy embedding training: fused loss vs autograd, negatives, end-to-end runs, CLI, link prediction."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.data.hierarchy import Hierarchy
from hypalign.data.hierarchy_sources import split_link_prediction, transitive_reduction
from hypalign.errors import InputError
from hypalign.eval.hierarchy import link_prediction, reconstruction
from hypalign.geometry import get_geometry
from hypalign.losses.hierarchy import hierarchy_nll_fused, hierarchy_nll_loss
from hypalign.models.hierarchy import HierarchyEmbedding
from hypalign.objectives.miners import negative_mask
from hypalign.recipes.hierarchy import HierarchyConfig, HierarchyTask, train_hierarchy
from hypalign.train import TrainConfig
from hypalign.train.optim import LazyAdam, RiemannianAdam

runner = CliRunner()


def tree(branching: int = 3, depth: int = 3) -> Hierarchy:
    """A complete tree: node names n0 (root), n1.. in breadth-first order."""
    names, edges, frontier = ["n0"], [], [0]
    for _ in range(depth):
        nxt = []
        for p in frontier:
            for _ in range(branching):
                names.append(f"n{len(names)}")
                edges.append((len(names) - 1, p))
                nxt.append(len(names) - 1)
        frontier = nxt
    return Hierarchy(names, np.asarray(edges))


@pytest.mark.parametrize("model", ["lorentz", "poincare", "euclidean"])
@pytest.mark.parametrize("c", [1.0, 0.5])
def test_fused_loss_matches_autograd_in_float64(model: str, c: float) -> None:
    g = torch.Generator().manual_seed(3)
    n, d, b, k = 60, 5, 32, 9
    w = torch.randn(n, d, generator=g) * 0.3
    if model == "poincare":  # inside the ball of radius 1/sqrt(c)
        w = w / (1 + w.norm(dim=1, keepdim=True)) / c**0.5
    u = torch.randint(n, (b,), generator=g)
    v = torch.randint(n, (b, k + 1), generator=g)
    v[v == u[:, None]] = (u[:, None].expand_as(v)[v == u[:, None]] + 1) % n  # no candidate equals u
    mask = torch.rand(b, k + 1, generator=g) > 0.2
    mask[:, 0] = True
    geom = get_geometry(model, c=c)
    ref_w = w.double().requires_grad_(True)
    ref = hierarchy_nll_loss(geom.dist(ref_w[u].unsqueeze(1).expand(-1, k + 1, -1), ref_w[v]), mask)
    ref.backward()
    for sparse in (False, True):
        fw = w.clone().requires_grad_(True)
        loss = hierarchy_nll_fused(fw, u, v, mask, model, c, sparse=sparse)
        loss.backward()
        grad = fw.grad.to_dense() if sparse else fw.grad
        assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
        torch.testing.assert_close(grad.double(), ref_w.grad, rtol=1e-5, atol=1e-7)


def test_negative_mask_excludes_self_and_ancestors() -> None:
    h = tree(2, 3)
    task = HierarchyTask(h, HierarchyConfig(source="x", negatives=14, batch_size=8))
    u = torch.arange(h.n_nodes).repeat_interleave(2)
    v = torch.randint(h.n_nodes, (len(u), 15))
    mask = negative_mask(u, v, task.indptr, task.indices)
    anc = h.ancestors()
    for i in range(len(u)):
        for k in range(1, 15):
            bad = int(v[i, k]) == int(u[i]) or int(v[i, k]) in set(anc[int(u[i])].tolist())
            assert bool(mask[i, k]) == (not bad)
    assert bool(mask[:, 0].all())


def test_lazy_adam_matches_dense_adam_on_touched_rows() -> None:
    torch.manual_seed(0)
    p1 = torch.nn.Parameter(torch.randn(10, 3))
    p2 = torch.nn.Parameter(p1.detach().clone())
    rows = torch.tensor([1, 4, 7])
    o1, o2 = LazyAdam([p1], lr=0.1), torch.optim.Adam([p2], lr=0.1)
    for _ in range(3):  # the same rows every step: lazy Adam == Adam on them, others untouched
        gv = torch.randn(3, 3)
        p1.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), gv, (10, 3), check_invariants=True)
        dense = torch.zeros(10, 3)
        dense[rows] = gv
        p2.grad = dense
        o1.step()
        o2.step()
    torch.testing.assert_close(p1.detach(), p2.detach())


@pytest.mark.parametrize(("model", "optimizer"), [("lorentz", "sparse_adam"), ("poincare", "rsgd"),
                                                  ("lorentz", "rsgd"), ("euclidean", "sparse_adam"),
                                                  ("poincare", "radam"), ("lorentz", "radam")])
def test_small_tree_is_reconstructed(tmp_path: Path, model: str, optimizer: str) -> None:
    h = tree(3, 3)  # 40 nodes, 102 closure pairs
    lr = {("lorentz", "rsgd"): 3.0, ("euclidean", "sparse_adam"): 0.3}.get((model, optimizer), 1.0)
    lr = 0.1 if optimizer == "radam" else lr
    out = train_hierarchy(
        HierarchyConfig(source="tree", dim=5, model=model, negatives=10, batch_size=16,
                        dtype="float64" if optimizer == "radam" else "float32"),
        TrainConfig(run_dir=str(tmp_path / model), epochs=150, lr=lr, optimizer=optimizer, schedule="constant",
                    burnin_epochs=5, progress=False, threads=1, save_interval_s=60),
        hierarchy=h,
    )
    assert out["map"] > (0.85 if model == "euclidean" else 0.98), out
    emb = np.load(tmp_path / model / "embeddings.npy")
    assert emb.shape == (40, 5) and np.isfinite(emb).all()
    assert emb.dtype == (np.float64 if optimizer == "radam" else np.float32)  # saved at the table's precision
    if model == "poincare":
        assert (np.linalg.norm(emb, axis=1) < 1).all()
    # the final numbers are those of the saved embeddings
    geom = get_geometry(model)
    assert reconstruction(torch.from_numpy(emb), h.ancestors(), geom)["map"] == pytest.approx(out["map"])


@pytest.mark.parametrize("deep", [False, True])
def test_hierarchy_resume_continues_exactly(tmp_path: Path, deep: bool) -> None:
    h = tree(3, 3)
    cfg = HierarchyConfig(source="tree", dim=3, negatives=8, batch_size=16)
    if deep:  # the deep-hierarchy setting: float64 ball, Riemannian Adam, placement, local negatives
        cfg = HierarchyConfig(source="tree", dim=3, model="poincare", negatives=8, local_negatives=4, batch_size=16,
                              dtype="float64", init="hierarchy")

    def tc(run: str, epochs: int, resume: bool = False) -> TrainConfig:
        return TrainConfig(run_dir=str(tmp_path / run), epochs=epochs, lr=0.1,
                           optimizer="radam" if deep else "sparse_adam", schedule="constant", progress=False,
                           threads=1, resume=resume)

    train_hierarchy(cfg, tc("full", 6), hierarchy=h)
    train_hierarchy(cfg, tc("split", 3), hierarchy=h)
    train_hierarchy(cfg, tc("split", 6, resume=True), hierarchy=h)
    a = np.load(tmp_path / "full" / "embeddings.npy")
    b = np.load(tmp_path / "split" / "embeddings.npy")
    np.testing.assert_array_equal(a, b)


def test_transitive_reduction_and_link_prediction_split() -> None:
    # a -> b -> c plus the redundant a -> c; d -> b
    h = Hierarchy(["a", "b", "c", "d"], np.asarray([[0, 1], [1, 2], [0, 2], [3, 1]]))
    assert transitive_reduction(h).tolist() == [[0, 1], [1, 2], [3, 1]]
    train, test = split_link_prediction(h, 1.0, seed=0)
    assert sorted(test.tolist()) == [[0, 1], [1, 2], [3, 1]]
    assert train[0].tolist() == [2] and train[1].tolist() == [] and train[3].tolist() == [2]


def test_link_prediction_ranks_by_hand() -> None:
    # 1-d Euclidean points: node 0 at 0; its true ancestors 1 (held out, at 2.0) and 2 (at 0.5);
    # the others at 1.0 and 3.0: filtered rank of the held-out 1 = 1 + #(non-ancestors closer) = 2
    x = torch.tensor([[0.0], [2.0], [0.5], [1.0], [3.0]])
    anc = [np.array([1, 2]), np.array([], dtype=np.int64), np.array([1]), np.array([], dtype=np.int64),
           np.array([], dtype=np.int64)]
    out = link_prediction(x, anc, np.array([[0, 1], [2, 1]]), get_geometry("euclidean"))
    # edge (2, 1): node 2 at 0.5, parent at 2.0 (d=1.5); closer non-ancestors: 0 (0.5), 3 (0.5) -> rank 3
    assert out["n_edges"] == 2 and out["mean_rank"] == pytest.approx(2.5)
    assert out["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2) and out["hits@10"] == 1.0


def test_cli_embed_eval_plot_and_outputs_feed_index_and_delta(tmp_path: Path) -> None:
    h = tree(3, 3)
    edges = tmp_path / "edges.tsv"
    edges.write_text("child\tparent\n" + "".join(f"{h.names[c]}\t{h.names[p]}\n" for c, p in h.edges.tolist()))
    run = tmp_path / "runs" / "t"
    r = runner.invoke(app, ["hierarchy", "embed", f"file:{edges}", "-o", str(run), "--dim", "2", "--epochs", "60",
                            "--lr", "1.0", "--batch-size", "16", "--negatives", "10", "--link-prediction", "0.1",
                            "--json", "--threads", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["nodes"] == 40 and res["map"] > 0.4 and "lp_mean_rank" in res
    r = runner.invoke(app, ["hierarchy", "eval", str(run), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["map"] == pytest.approx(res["map"]) and ev["lp_mrr"] == pytest.approx(res["lp_mrr"])
    r = runner.invoke(app, ["hierarchy", "plot", str(run), "-o", str(tmp_path / "disk.png"), "--method", "tangent-pca"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "disk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the embeddings go straight into the other commands
    r = runner.invoke(app, ["delta", str(run / "embeddings.npy"), "--metric", "lorentz", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["index", "build", str(run / "embeddings.npy"), "--geometry", "lorentz", "--c", "1", "--ids",
                            str(run / "names.txt"), "-o", str(tmp_path / "idx")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["index", "search", str(tmp_path / "idx"), str(run / "embeddings.npy"), "-k", "2", "--json"])
    assert r.exit_code == 0 and "n0" in r.output


def test_cli_deep_setting_writes_float64_embeddings_the_other_commands_read(tmp_path: Path) -> None:
    h = tree(2, 7)  # 255 nodes, 7 levels
    edges = tmp_path / "edges.tsv"
    edges.write_text("".join(f"{h.names[c]}\t{h.names[p]}\n" for c, p in h.edges.tolist()))
    run = tmp_path / "deep"
    r = runner.invoke(app, ["hierarchy", "embed", f"file:{edges}", "-o", str(run), "--dim", "4", "--model", "poincare",
                            "--dtype", "float64", "--optimizer", "radam", "--lr", "0.1", "--schedule", "cosine",
                            "--init", "hierarchy", "--negatives", "10", "--local-negatives", "5", "--burnin", "0",
                            "--epochs", "20", "--batch-size", "64", "--json", "--threads", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["map"] > 0.95, res
    emb = np.load(run / "embeddings.npy")
    assert emb.dtype == np.float64
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["hierarchy"]["dtype"] == "float64" and cfg["train"]["optimizer"] == "radam"
    r = runner.invoke(app, ["hierarchy", "eval", str(run), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["map"] == pytest.approx(res["map"]), r.output
    r = runner.invoke(app, ["delta", str(run / "embeddings.npy"), "--metric", "poincare", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["index", "build", str(run / "embeddings.npy"), "--geometry", "poincare", "--c", "1",
                            "--ids", str(run / "names.txt"), "-o", str(tmp_path / "idx")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["hierarchy", "embed", f"file:{edges}", "-o", str(tmp_path / "bad"),
                            "--negatives", "4", "--local-negatives", "5"])
    assert r.exit_code != 0 and "local negatives 5: expected 0 to negatives (4)" in r.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["hierarchy", "embed", "nonsense", "-o", str(tmp_path / "r")])
    assert r.exit_code == 2 and "expected wordnet:nouns" in r.output
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nb\ta\n")
    r = runner.invoke(app, ["hierarchy", "embed", f"file:{bad}", "-o", str(tmp_path / "r")])
    assert r.exit_code == 2 and "line 2" in r.output and "cycle" in r.output
    r = runner.invoke(app, ["hierarchy", "eval", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no config.json" in r.output and r.output.count("\n") == 1
    (tmp_path / "half").mkdir()  # a run that never finished: config.json but no embeddings
    (tmp_path / "half" / "config.json").write_text('{"recipe": "hierarchy", "hierarchy": {"source": "x"}}')
    r = runner.invoke(app, ["eval", str(tmp_path / "half")])
    assert r.exit_code == 2 and "missing embeddings.npy" in r.output and r.output.count("\n") == 1


def test_non_finite_weights_surface_as_nan_loss_and_evaluation_error() -> None:
    from hypalign.errors import InputError

    w = torch.randn(10, 3) * 0.1
    w[4] = float("nan")
    u, v = torch.tensor([4, 1]), torch.tensor([[2, 3, 5], [4, 6, 7]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    for model in ("lorentz", "poincare", "euclidean"):
        assert torch.isnan(hierarchy_nll_fused(w.clone().requires_grad_(True), u, v, mask, model))
    anc = [np.array([0])] + [np.array([], dtype=np.int64)] * 9
    with pytest.raises(InputError, match="contain NaN or inf"):
        reconstruction(w, anc, get_geometry("lorentz"))



@pytest.mark.parametrize("model", ["lorentz", "poincare", "euclidean"])
def test_hierarchy_init_places_each_level_one_step_further_out_near_its_parent(model: str) -> None:
    from hypalign.eval.hierarchy import reconstruction
    from hypalign.geometry import POINCARE_MAX_RADIUS
    from hypalign.models.hierarchy import hierarchy_init

    h = tree(4, 4)  # 341 nodes, depth 4
    x = hierarchy_init(h.parents(), h.topological_order(), 8, model, c=2.0, spread=1.5, step=1.0, decay=0.5)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    geo = HierarchyEmbedding(h.n_nodes, 8, model, c=2.0).geometry
    origin = torch.zeros(1, 8)
    r = geo.dist(x.double(), origin.double()).squeeze(-1) if model != "euclidean" else x.double().norm(dim=-1)
    anc = h.ancestors()
    depth = torch.tensor([len(a) for a in anc], dtype=torch.float64)  # a tree: depth = number of ancestors
    torch.testing.assert_close(r, 0.1 + depth, rtol=1e-4, atol=1e-4)  # geodesic radius 0.1 + step * depth
    assert float(r.max()) <= POINCARE_MAX_RADIUS[torch.float32] / 2.0**0.5 + 1e-3
    # already a fair embedding of the tree, unlike a random start
    start = reconstruction(x, anc, geo)
    rand = reconstruction(HierarchyEmbedding(h.n_nodes, 8, model, c=2.0).points(), anc, geo)
    # (the same ranks in both hyperbolic models: one construction, two charts)
    assert start["map"] > (0.7 if model != "euclidean" else 0.25) and rand["map"] < 0.05
    with pytest.raises(InputError, match=r"--init 'sarkar': expected one of random, hierarchy, combinatorial"):
        HierarchyTask(h, HierarchyConfig(source="t", init="sarkar"))


def test_hierarchy_init_uses_the_training_edges_only(tmp_path: Path) -> None:
    h = tree(3, 3)
    cfg = HierarchyConfig(source="tree", dim=5, negatives=10, batch_size=16, link_prediction=0.3, init="hierarchy")
    task = HierarchyTask(h, cfg, seed=0)
    held = task.test_edges
    orphans = [v for v in set(held[:, 0].tolist()) if all((v, p) in {tuple(e) for e in held.tolist()}
                                                            for p in h.parents()[v])]
    assert orphans  # a tree node's one parent edge held out: it starts as a root would, at radius 0.1
    r = task.model.geometry.dist(task.model.points()[orphans].double(), torch.zeros(1, 5).double())
    torch.testing.assert_close(r, torch.full_like(r, 0.1), rtol=1e-4, atol=1e-5)
    out = train_hierarchy(cfg, TrainConfig(run_dir=str(tmp_path / "r"), epochs=30, lr=0.3, optimizer="sparse_adam",
                                           schedule="constant", progress=False, threads=1, device="cpu"), hierarchy=h)
    assert out["map"] > 0.85 and "lp_mrr" in out  # (held-out ancestors count in the reconstruction)


def test_riemannian_adam_matches_geoopt_in_one_dimension() -> None:
    """In the 1-d Poincaré ball the per-row second moment is geoopt's per-coordinate one and the conformal
    transport is the parallel transport: the same trajectory as geoopt's RiemannianAdam on PoincareBallExact."""
    geoopt = pytest.importorskip("geoopt")
    g = torch.Generator().manual_seed(0)
    c = 0.25  # c and sqrt(c) exact in float32, which geoopt keeps its curvature in
    x0 = (torch.rand(6, 1, generator=g, dtype=torch.float64) * 2 - 1) * 0.95 / c**0.5
    ours = torch.nn.Parameter(x0.clone())
    ref = geoopt.ManifoldParameter(x0.clone(), manifold=geoopt.PoincareBallExact(c=c))
    o1 = RiemannianAdam([{"params": [ours], "manifold": "poincare", "c": c}], lr=0.05, betas=(0.8, 0.95))
    o2 = geoopt.optim.RiemannianAdam([ref], lr=0.05, betas=(0.8, 0.95), eps=1e-12)
    for _ in range(20):
        grad = torch.randn(6, 1, generator=g, dtype=torch.float64)
        ours.grad, ref.grad = grad.clone(), grad.clone()
        o1.step()
        o2.step()
    torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-9, atol=1e-12)
    assert float((ours.detach() - x0).abs().min()) > 1e-3  # it moved


# (not Lorentz at radius 20: its space components, ~1e8 there, cannot resolve a step of 0.01 in float64)
@pytest.mark.parametrize(("model", "radius"), [("poincare", 0.5), ("poincare", 5.0), ("poincare", 20.0),
                                               ("lorentz", 0.5), ("lorentz", 5.0), ("euclidean", 0.5),
                                               ("euclidean", 20.0)])
def test_riemannian_adam_first_step_is_a_geodesic_of_length_lr_downhill(model: str, radius: float) -> None:
    """Whatever the radius, the first step moves each row by lr along the geodesic opposite its Riemannian
    gradient (Adam's first step is the normalised gradient); the loss goes down."""
    c, lr, d = 1.3, 0.01, 4
    geom = get_geometry(model, c=c)
    g = torch.Generator().manual_seed(1)
    direction = torch.nn.functional.normalize(torch.randn(5, d, generator=g, dtype=torch.float64), dim=-1)
    s = c**0.5
    scale = {"poincare": math.tanh(s * radius / 2) / s, "lorentz": math.sinh(s * radius) / s}.get(model, radius)
    x = torch.nn.Parameter(direction * scale)
    target = torch.randn(5, d, generator=g, dtype=torch.float64) * 0.1
    before = x.detach().clone()
    loss = geom.dist(x, target).sum()
    loss.backward()
    RiemannianAdam([{"params": [x], "manifold": model, "c": c}], lr=lr).step()
    moved = geom.dist(before, x.detach())
    # at radius 20 a step of 0.01 changes Poincaré coordinates by ~1e-11: float64 resolves it to ~1e-5
    torch.testing.assert_close(moved, torch.full_like(moved, lr), rtol=1e-4 if radius > 10 else 1e-7, atol=0)
    assert bool((geom.dist(x.detach(), target) < geom.dist(before, target)).all())


def test_riemannian_adam_sparse_rows_update_only_those_rows() -> None:
    p = torch.nn.Parameter(torch.rand(10, 3, dtype=torch.float64) * 0.5)
    before = p.detach().clone()
    rows = torch.tensor([1, 4, 7])
    p.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), torch.randn(3, 3, dtype=torch.float64), (10, 3),
                                     check_invariants=True)
    RiemannianAdam([{"params": [p], "manifold": "poincare", "c": 1.0}], lr=0.1).step()
    changed = (p.detach() != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [1, 4, 7]
    with pytest.raises(ValueError, match="unknown manifold 'sphere'"):
        p.grad = torch.zeros(10, 3, dtype=torch.float64)
        RiemannianAdam([{"params": [p], "manifold": "sphere"}]).step()


def test_negative_power_draws_the_closures_dampened_unigram() -> None:
    """``negative_power = a``: negatives with probability ``(deg + 1)^a / sum``, ``deg`` the closure pairs a node is in
    (gensim's draw at a = 0.75); by hand on a ternary tree of depth 3 (the root in 39 pairs, a level-1 node in 13, a
    level-2 node in 5, a leaf in 3), the frequencies of 200,000+ draws within 4 standard errors; 0 draws uniformly."""
    h = tree(3, 3)
    deg = np.zeros(h.n_nodes)
    for v, a in enumerate(h.ancestors()):
        deg[v] += len(a)
        deg[a] += 1
    assert sorted(set(deg.tolist())) == [3.0, 5.0, 13.0, 39.0]  # leaves, level 2 (2 + 3), level 1 (1 + 12), root
    task = HierarchyTask(h, HierarchyConfig(source="t", negatives=50, batch_size=200, negative_power=0.75))
    torch.manual_seed(0)
    counts = np.zeros(h.n_nodes)
    for _ in range(40):
        for batch in task.batches(0):
            _, v, _ = task.candidates(batch)
            counts += np.bincount(v[:, 1:].reshape(-1).numpy(), minlength=h.n_nodes)
    want = (deg + 1) ** 0.75 / ((deg + 1) ** 0.75).sum()
    freq = counts / counts.sum()
    assert counts.sum() >= 200_000 and np.abs(freq - want).max() < 4 * np.sqrt(want.max() / counts.sum())
    uniform = HierarchyTask(h, HierarchyConfig(source="t", negatives=50, batch_size=200))
    assert uniform.neg_weights is None and torch.equal(task.neg_weights, torch.from_numpy((deg + 1) ** 0.75))


def test_local_negatives_come_from_the_positive_ancestors_descendants() -> None:
    h = tree(3, 3)
    task = HierarchyTask(h, HierarchyConfig(source="t", negatives=6, local_negatives=4, batch_size=32))
    anc = h.ancestors()
    desc = {a: {v for v in range(h.n_nodes) if a in set(anc[v].tolist())} for a in range(h.n_nodes)}
    torch.manual_seed(0)
    seen_sibling = False
    for batch in task.batches(0):
        u, v, mask = task.candidates(batch)
        for i in range(len(u)):
            a = int(v[i, 0])
            assert a in set(anc[int(u[i])].tolist())
            assert {int(t) for t in v[i, 1:5]} <= desc[a]
            seen_sibling |= any(int(t) not in desc.get(int(u[i]), set()) and int(t) != int(u[i])
                                and bool(mask[i, 1 + k]) for k, t in enumerate(v[i, 1:5]))
    assert seen_sibling
    with pytest.raises(InputError, match="local negatives 7: expected 0 to negatives"):
        HierarchyTask(h, HierarchyConfig(source="t", negatives=6, local_negatives=7))
    with pytest.raises(InputError, match="dtype 'float16'"):
        HierarchyTask(h, HierarchyConfig(source="t", dtype="float16"))


def test_float64_poincare_keeps_deep_levels_apart() -> None:
    """25 levels at one geodesic unit each: float64 Poincaré coordinates hold them (radius 25.1, consecutive
    levels exactly 1 apart); float32 has to squeeze them within radius 12."""
    from hypalign.geometry import POINCARE_MAX_RADIUS
    from hypalign.models.hierarchy import hierarchy_init

    n = 26
    h = Hierarchy([f"n{i}" for i in range(n)], np.asarray([(i + 1, i) for i in range(n - 1)]))
    geom = get_geometry("poincare")
    x64 = hierarchy_init(h.parents(), h.topological_order(), 3, "poincare", spread=0.0, dtype=torch.float64)
    r = geom.dist(x64, torch.zeros(1, 3, dtype=torch.float64))
    torch.testing.assert_close(r, 0.1 + torch.arange(n, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(geom.dist(x64[1:], x64[:-1]), torch.ones(n - 1, dtype=torch.float64), rtol=1e-6,
                               atol=1e-6)
    x32 = hierarchy_init(h.parents(), h.topological_order(), 3, "poincare", spread=0.0, dtype=torch.float32)
    r32 = geom.dist(x32.double(), torch.zeros(1, 3, dtype=torch.float64))
    assert float(r32.max()) <= POINCARE_MAX_RADIUS[torch.float32] + 0.01 < 25  # (float32 rounding there: ~1e-3)


def test_spherical_code_spreads_points_wider_than_random_ones() -> None:
    from hypalign.models.hierarchy import spherical_code

    for n, m in [(1, 9), (2, 9), (7, 4), (60, 9), (300, 9), (40, 3), (5, 1)]:
        w, chord = spherical_code(n, m, seed=3)
        assert w.shape == (n, m) and w.dtype == torch.float64
        if n > 1:  # the reported chord is the true smallest pairwise distance
            d = torch.cdist(w, w) + torch.eye(n) * 9
            assert float(d.min()) == pytest.approx(chord, abs=1e-9)
        if m > 1 and n > 1:
            torch.testing.assert_close(w.norm(dim=1), torch.ones(n, dtype=torch.float64))
        if n > 2 * m:  # repulsion beats random directions by a wide margin
            g = torch.Generator().manual_seed(0)
            r = torch.randn(n, m, generator=g, dtype=torch.float64)
            r = r / r.norm(dim=1, keepdim=True)
            assert chord > 1.5 * float((torch.cdist(r, r) + torch.eye(n) * 9).min())
    assert spherical_code(6, 3)[1] == pytest.approx(2**0.5)  # the octahedron
    assert spherical_code(5, 1)[1] == pytest.approx(0.5)  # [-1, 1] in four gaps
    with pytest.raises(ValueError, match="n >= 1"):
        spherical_code(0, 3)


def test_radial_step_solves_its_equation_and_shrinks_with_wider_codes() -> None:
    from hypalign.models.hierarchy import radial_step

    for chord, cap in [(2.0, 1.4), (1.414, 1.4), (0.6, 1.4), (0.6, 1.95)]:
        q = math.exp(-radial_step(chord, cap) / 2)
        assert q * (1 / (1 - q) + 2 / cap) == pytest.approx(chord, rel=1e-9)
    assert radial_step(2.0, 1.4) < radial_step(1.0, 1.4) < radial_step(0.5, 1.4)
    assert radial_step(0.6, 1.95) < radial_step(0.6, 1.4)  # a wider cone for the children: shorter steps


@pytest.mark.parametrize("branching,depth", [(2, 8), (3, 5), (10, 3)])
def test_combinatorial_construction_reconstructs_trees_exactly_in_both_hyperbolic_charts(
    branching: int, depth: int
) -> None:
    from hypalign.models.hierarchy import combinatorial_construction

    h = tree(branching, depth)
    anc = h.ancestors()
    ranks = {}
    for model in ("poincare", "lorentz"):
        x = combinatorial_construction(h.parents(), h.topological_order(), 6, model, c=2.0)
        assert x.dtype == torch.float64 and torch.isfinite(x).all()
        out = reconstruction(x, anc, get_geometry(model, c=2.0))
        assert out["map"] == 1.0 and out["mean_rank"] == 1.0, (model, out)  # no training at all
        ranks[model] = out
    # a random start of the same table is nowhere near
    rand = reconstruction(HierarchyEmbedding(h.n_nodes, 6, "poincare", c=2.0).points(), anc, get_geometry("poincare"))
    assert rand["map"] < 0.2


def test_combinatorial_construction_fits_the_float_budget_and_separates_several_roots() -> None:
    from hypalign.geometry import POINCARE_MAX_RADIUS
    from hypalign.models.hierarchy import combinatorial_construction

    # 40 levels of binary tree-like chains: too deep for float32's radius 12, so radii are scaled down
    names, edges = ["r"], []
    for i in range(1, 41):
        names += [f"a{i}", f"b{i}"]
        edges += [(2 * i - 1, max(2 * i - 3, 0)), (2 * i, max(2 * i - 3, 0))]
    h = Hierarchy(names, np.asarray(edges))
    geo = get_geometry("poincare", c=0.5)
    for dtype in (torch.float32, torch.float64):
        x = combinatorial_construction(h.parents(), h.topological_order(), 4, "poincare", c=0.5, dtype=dtype)
        assert x.dtype == dtype and torch.isfinite(x).all()
        r = geo.dist(x.double(), torch.zeros(1, 4, dtype=torch.float64))
        assert float(r.max()) <= POINCARE_MAX_RADIUS[dtype] / 0.5**0.5 + 1e-3
        assert bool((x.double().norm(dim=1) < 1 / 0.5**0.5).all())
        depth_a = r[1::2]  # the a-chain: strictly further out level by level
        assert bool((depth_a[1:] > depth_a[:-1]).all())
    # a forest: roots around a virtual origin, apart from each other; each tree still exact
    f = Hierarchy(["r0", "r1", "r2"] + [f"c{i}" for i in range(9)],
                  np.asarray([(3 + i, i % 3) for i in range(9)]))
    x = combinatorial_construction(f.parents(), f.topological_order(), 3, "poincare")
    assert float(torch.pdist(x[:3]).min()) > 0.1
    assert reconstruction(x, f.ancestors(), get_geometry("poincare"))["map"] == 1.0
    with pytest.raises(ValueError, match="dim >= 2"):
        combinatorial_construction(f.parents(), f.topological_order(), 1)
    with pytest.raises(ValueError, match="0 < cap < 2"):
        combinatorial_construction(f.parents(), f.topological_order(), 3, cap=2.0)


def test_combinatorial_construction_on_wordnet_mammals_and_cli_epochs_zero(tmp_path: Path) -> None:
    """Real data: WordNet mammals (1,180 synsets, a few with two parents) reconstructed with nothing trained,
    through `hierarchy embed --epochs 0`; the run directory is a normal one (eval reads it)."""
    run = tmp_path / "cc"
    r = runner.invoke(app, ["hierarchy", "embed", "wordnet:mammal.n.01", "-o", str(run), "--dim", "10",
                            "--model", "poincare", "--dtype", "float64", "--init", "combinatorial", "--epochs", "0",
                            "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["epochs"] == 0 and res["init"] == "combinatorial" and res["map"] > 0.99 and res["mean_rank"] < 1.1
    r = runner.invoke(app, ["hierarchy", "eval", str(run), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["map"] == pytest.approx(res["map"]), r.output
    r = runner.invoke(app, ["hierarchy", "embed", "wordnet:mammal.n.01", "-o", str(tmp_path / "r0"),
                            "--epochs", "0"])
    assert r.exit_code == 2 and "epochs 0 keeps the initial placement" in r.output


def dag() -> Hierarchy:
    """tree(3, 3) plus second parents across branches (a DAG, as WordNet and GO are)."""
    t = tree(3, 3)
    extra = np.asarray([(13, 2), (20, 7), (39, 1), (27, 3), (8, 12)])
    return Hierarchy(t.names, np.concatenate([t.edges, extra]))


@pytest.mark.parametrize(("model", "radius"), [("poincare", 3.0), ("poincare", 25.0), ("lorentz", 3.0),
                                               ("euclidean", 3.0)])
def test_mining_gives_the_exact_nearest_non_ancestors_and_reconstruction_ranks(model: str, radius: float) -> None:
    """Brute force as the oracle: all-pairs distances from the geometry; ranks from the evaluation module.
    Radius 25 (float64 Poincaré, 1 - |x|^2 ~ 5e-11) is where a dot-product shortcut would lose the order."""
    from hypalign.eval.retrieval import relevant_ranks
    from hypalign.objectives.miners import mine_nearest_non_ancestors

    h = dag()
    anc = h.ancestors()
    g = torch.Generator().manual_seed(3)
    deep = radius > 10  # deep points in one narrow cone, radii in [radius - 1, radius]
    direction = torch.randn(h.n_nodes, 4, generator=g, dtype=torch.float64)
    direction = torch.nn.functional.normalize(direction + torch.tensor([3.0 if deep else 0.0, 0, 0, 0],
                                                                       dtype=torch.float64), dim=1)
    rho = radius - torch.rand(h.n_nodes, 1, generator=g, dtype=torch.float64) * (1.0 if deep else radius)
    geo = get_geometry(model)
    x = {"poincare": torch.tanh(rho / 2) * direction, "lorentz": torch.sinh(rho) * direction,
         "euclidean": rho * direction}[model]
    indptr = np.zeros(h.n_nodes + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(a) for a in anc])
    indices = np.concatenate(anc).astype(np.int64)
    pool, ranks = mine_nearest_non_ancestors(x, indptr, indices, model, 1.0, k=6)
    d = geo.cdist(x, x)
    for u in range(h.n_nodes):
        bad = set(anc[u].tolist()) | {u}
        want = [w for w in torch.argsort(d[u]).tolist() if w not in bad][:6]
        got = pool[u].tolist()
        assert sorted(d[u, got].tolist()) == pytest.approx(d[u, got].tolist())  # nearest first
        np.testing.assert_allclose(d[u, got].numpy(), d[u, want].numpy(), rtol=1e-9)  # ties may swap indices
    nodes = np.arange(h.n_nodes)
    want_ranks = relevant_ranks(x, x, anc, geo, exclude=nodes, filtered=True)
    for u in range(h.n_nodes):
        np.testing.assert_array_equal(ranks[indptr[u]:indptr[u + 1]], want_ranks[u])
    assert ranks.mean() == pytest.approx(reconstruction(x, anc, geo)["mean_rank"])


def test_mining_pads_a_pool_larger_than_the_non_ancestors() -> None:
    from hypalign.objectives.miners import mine_nearest_non_ancestors

    x = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    indptr, indices = np.array([0, 0, 1, 2]), np.array([0, 0])  # 1 and 2 under the root 0
    pool, ranks = mine_nearest_non_ancestors(x, indptr, indices, "poincare", 1.0, k=3)
    assert pool.tolist() == [[1, 2, -1], [2, -1, -1], [1, -1, -1]] or pool.tolist() == [[2, 1, -1], [2, -1, -1],
                                                                                         [1, -1, -1]]
    assert ranks.tolist() == [1, 1]  # d(1, 0) = d(0, 1) < d(1, 2)
    with pytest.raises(ValueError, match="k must be"):
        mine_nearest_non_ancestors(x, indptr, indices, "poincare", 1.0, k=0)


def test_rank_hinge_loss_by_hand() -> None:
    from hypalign.losses.hierarchy import rank_hinge_loss

    d_pos = torch.tensor([1.0, 2.0], dtype=torch.float64)
    d_neg = torch.tensor([[0.5, 3.0], [2.05, 1.0]], dtype=torch.float64)
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    # row 0: max(0, .1 + 1 - .5) + 0 = .6; row 1: (.1 + 2 - 2.05) + (.1 + 2 - 1) = 1.15, weighted 3.45
    assert float(rank_hinge_loss(d_pos, d_neg, w, 0.1)) == pytest.approx((0.6 + 3.45) / 2)
    mask = torch.tensor([[True, True], [True, False]])
    assert float(rank_hinge_loss(d_pos, d_neg, w, 0.1, mask)) == pytest.approx((0.6 + 3 * 0.05) / 2)
    assert float(rank_hinge_loss(d_pos, d_neg, w, 0.0, mask)) == pytest.approx(0.5 / 2)


def test_warp_refinement_from_a_trained_run_lowers_the_mean_rank_and_resumes_exactly(tmp_path: Path) -> None:
    """loss warp from a run of the papers' loss (init_from): the mean rank falls, the eval records the mining
    time, the pool and ranks travel in the checkpoint (a split run equals an uninterrupted one)."""
    h = dag()
    base = HierarchyConfig(source="dag", dim=3, model="poincare", negatives=8, batch_size=16, dtype="float64")
    first = train_hierarchy(base, TrainConfig(run_dir=str(tmp_path / "nll"), epochs=15, lr=0.1, optimizer="radam",
                                              progress=False, threads=1), hierarchy=h)
    cfg = HierarchyConfig(source="dag", dim=3, model="poincare", negatives=6, batch_size=16, dtype="float64",
                          loss="warp", hard_pool=12, init_from=str(tmp_path / "nll"))

    def tc(run: str, epochs: int, resume: bool = False) -> TrainConfig:
        return TrainConfig(run_dir=str(tmp_path / run), epochs=epochs, lr=0.03, optimizer="radam", schedule="constant",
                           progress=False, threads=1, resume=resume)

    out = train_hierarchy(cfg, tc("warp", 20), hierarchy=h)
    assert out["loss"] == "warp" and out["mine_seconds"] > 0 and out["init"] == f"run:{tmp_path / 'nll'}"
    assert out["mean_rank"] < first["mean_rank"] - 0.3, (first, out)
    train_hierarchy(cfg, tc("split", 10), hierarchy=h)
    train_hierarchy(cfg, tc("split", 20, resume=True), hierarchy=h)
    np.testing.assert_array_equal(np.load(tmp_path / "warp" / "embeddings.npy"),
                                  np.load(tmp_path / "split" / "embeddings.npy"))


def test_warp_and_init_from_errors(tmp_path: Path) -> None:
    h = dag()
    train_hierarchy(HierarchyConfig(source="dag", dim=3, model="poincare", negatives=4, batch_size=16),
                    TrainConfig(run_dir=str(tmp_path / "r"), epochs=1, optimizer="sparse_adam", progress=False,
                                threads=1), hierarchy=h)
    with pytest.raises(InputError, match=r"use adam \(= sparse_adam\), rsgd or radam"):
        train_hierarchy(HierarchyConfig(source="dag"), TrainConfig(run_dir=str(tmp_path / "a"), optimizer="adamw"),
                        hierarchy=h)
    with pytest.raises(InputError, match="drop --local-negatives"):
        HierarchyTask(h, HierarchyConfig(source="dag", loss="warp", negatives=4, local_negatives=2))
    with pytest.raises(InputError, match="must be 1 to the hard pool"):
        HierarchyTask(h, HierarchyConfig(source="dag", loss="warp", negatives=40, hard_pool=32))
    with pytest.raises(InputError, match="choose one"):
        HierarchyTask(h, HierarchyConfig(source="dag", init="hierarchy", init_from=str(tmp_path / "r")))
    with pytest.raises(InputError, match=r"it is poincare with c=1\.0, this run lorentz"):
        HierarchyTask(h, HierarchyConfig(source="dag", dim=3, model="lorentz", init_from=str(tmp_path / "r")))
    with pytest.raises(InputError, match="dimension 3, this run 5"):
        HierarchyTask(h, HierarchyConfig(source="dag", dim=5, model="poincare", init_from=str(tmp_path / "r")))
    with pytest.raises(InputError, match="is not this hierarchy"):
        HierarchyTask(tree(2, 2), HierarchyConfig(source="t", dim=3, model="poincare", init_from=str(tmp_path / "r")))
    with pytest.raises(InputError, match=r"missing embeddings\.npy"):
        HierarchyTask(h, HierarchyConfig(source="dag", dim=3, model="poincare", init_from=str(tmp_path)))
    r = runner.invoke(app, ["hierarchy", "embed", "wordnet:mammal.n.01", "-o", str(tmp_path / "x"), "--loss", "warp",
                            "--local-negatives", "3"])
    assert r.exit_code == 2 and "drop --local-negatives" in r.output and "Traceback" not in r.output
