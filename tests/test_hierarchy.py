"""Hierarchy data (WordNet, GO, edge lists) and reconstruction metrics (gensim as oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hypalign.data.go import GO_ROOTS, go_hierarchy
from hypalign.data.hierarchy import Hierarchy, read_edge_list, wordnet_noun_hierarchy
from hypalign.errors import InputError
from hypalign.eval.hierarchy import average_precision_from_ranks, reconstruction
from hypalign.geometry import PoincareBall


@pytest.fixture(scope="module")
def nouns() -> Hierarchy:
    return wordnet_noun_hierarchy()


def test_wordnet_noun_closure_counts(nouns: Hierarchy) -> None:
    assert nouns.n_nodes == 82115 and len(nouns.edges) == 84427
    # every (synset, ancestor) pair over hypernym + instance-hypernym pointers, no self-loops:
    # the count Nickel & Kiela (2017) report
    assert len(nouns.closure()) == 743241
    assert nouns.names[nouns.index["dog.n.01"]] == "dog.n.01"
    anc = nouns.ancestors()[nouns.index["dog.n.01"]]
    anc_names = {nouns.names[a] for a in anc}
    assert {"canine.n.02", "carnivore.n.01", "mammal.n.01", "animal.n.01", "entity.n.01"} <= anc_names
    mammals = nouns.subtree("mammal.n.01")
    # no name filter applied (the reference script drops 24 patterns and gets ~1,180 / ~6,540)
    assert (mammals.n_nodes, len(mammals.closure())) == (1182, 6542)


def test_go_namespaces() -> None:
    sizes = {}
    for ns in ("BP", "MF", "CC"):
        g = go_hierarchy(ns)
        sizes[ns] = (g.n_nodes, len(g.edges), len(g.closure()))
        assert g.labels[GO_ROOTS[ns]] in ("biological_process", "molecular_function", "cellular_component")
        order = g.topological_order()
        assert order[0] == g.index[GO_ROOTS[ns]]  # the root is the only node without parents
    # nodes = terms in the 2014-01 ontology; is_a + part_of edges; (term, ancestor) pairs
    assert sizes == {"BP": (25571, 52443, 505137), "MF": (9661, 11719, 65736), "CC": (3386, 6370, 47461)}
    with pytest.raises(InputError, match="unknown GO namespace"):
        go_hierarchy("XX")


def test_edge_list_reading_and_errors(tmp_path: Path) -> None:
    ok = tmp_path / "ok.tsv"
    ok.write_text("child\tparent\nb\ta\nc\ta\nd\tb\td\tc\n".replace("\td\tc", "\nd\tc") + "# comment\nd\tb\n")
    h = read_edge_list(ok)
    assert sorted(h.names) == ["a", "b", "c", "d"] and len(h.edges) == 4  # duplicate d->b kept once
    assert {h.names[a] for a in h.ancestors()[h.index["d"]]} == {"a", "b", "c"}
    cases = {
        "a,b,c,d\n": "line 1: malformed line",
        "b,a\nc,c\n": "line 2: self-loop: 'c' is its own parent",
        "b,a,is_a\nc,a,regulates\n": "line 2: unknown relation type: 'regulates'",
        "b,a\nc,b\na,c\n": "line 3: cycle: the edge a -> c closes a cycle",
    }
    for content, message in cases.items():
        p = tmp_path / "bad.csv"
        p.write_text(content)
        with pytest.raises(InputError, match=message):
            read_edge_list(p)
    p = tmp_path / "mixed.csv"
    p.write_text("b,a\nc,c\nd,b,regulates\na,b\ne,b\nbroken\n")
    with pytest.warns(
        UserWarning, match=r"dropped 4 lines \(1 cycle, 1 malformed line, 1 self-loop, 1 unknown relation"
    ):
        h = read_edge_list(p, drop_invalid=True)
    assert sorted(h.names) == ["a", "b", "e"] and len(h.edges) == 2
    with pytest.raises(InputError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        Hierarchy(["a", "b"], np.array([[0, 1], [1, 0]])).topological_order()


def _random_tree(n: int, seed: int) -> Hierarchy:
    rng = np.random.default_rng(seed)
    edges = [(i, int(rng.integers(0, i))) for i in range(1, n)]
    return Hierarchy([f"n{i}" for i in range(n)], np.asarray(edges))


def test_reconstruction_hand_case() -> None:
    # a <- b <- c on a line in the Poincaré disk (c = 1), plus an unrelated node z
    h = Hierarchy(["a", "b", "c", "z"], np.array([[1, 0], [2, 1]]))
    x = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.6, 0.0], [-0.2, 0.0]], dtype=torch.float64)
    m = reconstruction(x, h.ancestors(), PoincareBall(1.0))
    # z is farther from b and c than any of their ancestors: every rank is 1
    assert (m["n_nodes"], m["n_pairs"], m["mean_rank"], m["map"]) == (2, 3, 1.0, 1.0)
    x[3] = torch.tensor([0.45, 0.0])  # z between b and c: closer to both than their ancestors
    m = reconstruction(x, h.ancestors(), PoincareBall(1.0))
    # b: a ranks 2 -> AP 1/2; c: b and a rank 2 and 2 -> positions 2, 3 -> AP (1/2 + 2/3)/2
    assert m["mean_rank"] == pytest.approx(2.0)
    assert m["map"] == pytest.approx((0.5 + (1 / 2 + 2 / 3) / 2) / 2)
    assert average_precision_from_ranks(np.array([1, 3])) == pytest.approx((1 + 2 / 4) / 2)


@pytest.mark.parametrize("name", ["poincare", "lorentz", "euclidean"])
def test_reconstruction_kernel_equals_the_torch_path(name: str) -> None:
    """The numba backend (auto's choice for these geometries) and blocked cdist give the same ranks, hence the
    same mean rank and MAP, on all nodes and on a sample; the sphere has no kernel: auto falls back, kernel
    is an error."""
    from hypalign.geometry import Sphere, get_geometry

    h = _random_tree(300, 4)
    anc = h.ancestors()
    rng = np.random.default_rng(5)
    geo = get_geometry(name, c=0.7) if name != "euclidean" else get_geometry(name)
    x = geo.expmap0(torch.from_numpy(rng.normal(size=(h.n_nodes, 4)) * 0.8))
    for nodes in (None, rng.choice(h.n_nodes, 60, replace=False)):
        fast = reconstruction(x, anc, geo, nodes=nodes)
        ref = reconstruction(x, anc, geo, nodes=nodes, backend="torch")
        assert fast == reconstruction(x, anc, geo, nodes=nodes, backend="kernel")
        assert (fast["n_nodes"], fast["n_pairs"]) == (ref["n_nodes"], ref["n_pairs"])
        assert fast["mean_rank"] == pytest.approx(ref["mean_rank"], rel=1e-15) and fast["mean_rank"] > 1.5
        assert fast["map"] == pytest.approx(ref["map"], rel=1e-15)
    s = torch.nn.functional.normalize(x, dim=1)
    assert reconstruction(s, anc, Sphere()) == reconstruction(s, anc, Sphere(), backend="torch")
    with pytest.raises(ValueError, match="kernel covers"):
        reconstruction(s, anc, Sphere(), backend="kernel")
    with pytest.raises(ValueError, match="backend"):
        reconstruction(x, anc, geo, backend="gpu")


def test_reconstruction_agrees_with_gensim(tmp_path: Path, nouns: Hierarchy) -> None:
    from gensim.models.poincare import PoincareKeyedVectors, ReconstructionEvaluation

    for h in (_random_tree(150, 0), nouns.subtree("mammal.n.01")):
        rng = np.random.default_rng(1)
        # gensim keeps float32 vectors: give both the same float32 points
        x = PoincareBall(1.0).expmap0(torch.from_numpy(rng.normal(size=(h.n_nodes, 5)) * 0.6)).numpy()
        x = x.astype(np.float32).astype(np.float64)
        ours = reconstruction(torch.from_numpy(x), h.ancestors(), PoincareBall(1.0))
        closure = h.closure()
        tsv = tmp_path / "closure.tsv"
        tsv.write_text("".join(f"{h.names[c]}\t{h.names[a]}\n" for c, a in closure))
        kv = PoincareKeyedVectors(vector_size=5, vector_count=0)
        kv.add_vectors(h.names, x)
        g_rank, g_map = ReconstructionEvaluation(str(tsv), kv).evaluate_mean_rank_and_map()
        anc = h.ancestors()
        d_all = PoincareBall(1.0).cdist(torch.from_numpy(x), torch.from_numpy(x)).numpy()
        ranks, near_ties = [], 0
        for v in range(h.n_nodes):
            if not len(anc[v]):
                continue
            neg = np.delete(d_all[v], np.append(anc[v], v))
            ranks.append(np.array([1 + int(np.sum(neg < d_all[v, a])) for a in anc[v]]))
            near_ties += sum(int(np.sum(np.abs(neg - d_all[v, a]) < 1e-5)) for a in anc[v])
        n_pairs = ours["n_pairs"]
        assert n_pairs == len(closure) and near_ties <= n_pairs // 100
        assert ours["mean_rank"] == pytest.approx(np.mean(np.concatenate(ranks)), rel=1e-12)
        assert ours["map"] == pytest.approx(np.mean([average_precision_from_ranks(r) for r in ranks]), rel=1e-12)
        # gensim counts the node itself (distance 0) as a negative: every rank is one higher. Its float32
        # distances may flip near-ties (|d - d'| < 1e-5): at most one rank step each.
        assert abs(g_rank * n_pairs - (ours["mean_rank"] + 1) * n_pairs) <= near_ties + 1e-6
        gensim_map_from_ours = np.mean([average_precision_from_ranks(r + 1) for r in ranks])
        assert g_map == pytest.approx(gensim_map_from_ours, abs=near_ties / len(ranks) + 1e-9)
        assert g_map < ours["map"]
