"""Molecules (RDKit / torch-geometric) and the InfoAlign context graph: graphs from SMILES, fingerprints against
RDKit's own, scaffolds and scaffold splits, property tables and the context-graph directory format with its
errors, and the weighted random walks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hypalign.errors import InputError

DRUGS = {  # real molecules: aspirin, ibuprofen, caffeine, ethanol, paracetamol, benzene, naproxen
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "ethanol": "CCO",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "benzene": "c1ccccc1",
    "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
}


def test_mol_graph_has_the_atoms_and_both_directions_of_every_bond() -> None:
    from rdkit import Chem

    from hypalign.data.molecules import mol_graph

    for name, smi in DRUGS.items():
        g = mol_graph(smi)
        m = Chem.MolFromSmiles(smi)
        assert g.x.shape == (m.GetNumAtoms(), 9) and g.edge_attr.shape == (2 * m.GetNumBonds(), 3), name
        assert g.x[:, 0].tolist() == [a.GetAtomicNum() for a in m.GetAtoms()]
        assert g.x[:, 7].tolist() == [int(a.GetIsAromatic()) for a in m.GetAtoms()]
        pairs = {tuple(e) for e in g.edge_index.t().tolist()}
        for b in m.GetBonds():
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            assert (i, j) in pairs and (j, i) in pairs
    with pytest.raises(InputError, match=r"SMILES: line 1: unparsable SMILES 'C1CC\('"):
        mol_graph("C1CC(")  # torch-geometric's from_smiles alone would return an empty graph


def test_fingerprints_and_tanimoto_equal_rdkits_own() -> None:
    from rdkit import DataStructs
    from rdkit.Chem import AllChem, MolFromSmiles

    from hypalign.data.molecules import morgan_fingerprints, parse_smiles, tanimoto

    mols, kept = parse_smiles(list(DRUGS.values()))
    assert kept.tolist() == list(range(len(DRUGS)))
    fp = morgan_fingerprints(mols, radius=2, n_bits=1024)
    ref = [AllChem.GetMorganFingerprintAsBitVect(MolFromSmiles(s), 2, nBits=1024) for s in DRUGS.values()]
    for i, r in enumerate(ref):
        assert np.flatnonzero(fp[i]).tolist() == list(r.GetOnBits())
    sim = tanimoto(fp, fp)
    for i, r in enumerate(ref):
        np.testing.assert_allclose(sim[i], DataStructs.BulkTanimotoSimilarity(r, ref), rtol=1e-6)
    assert morgan_fingerprints(mols[:1], radius=4, n_bits=1024).sum() > fp[:1].sum()  # InfoAlign's r = 4 target


def test_murcko_scaffolds_and_a_scaffold_split_keeps_each_scaffold_in_one_part() -> None:
    from hypalign.data.molecules import murcko_scaffold, parse_smiles, scaffold_split

    mols, _ = parse_smiles(list(DRUGS.values()))
    scaf = dict(zip(DRUGS, (murcko_scaffold(m) for m in mols), strict=True))
    assert scaf["ibuprofen"] == scaf["aspirin"] == scaf["paracetamol"] == "c1ccccc1" and scaf["ethanol"] == ""
    assert scaf["naproxen"] == "c1ccc2ccccc2c1"
    # 60 molecules over 12 scaffolds (a ring of growing size, with side chains): scaffolds never straddle parts
    smiles = [f"{'C' * (k % 5 + 1)}C1{'C' * (3 + k % 12)}C1" for k in range(60)]
    mols, _ = parse_smiles(smiles)
    groups = [murcko_scaffold(m) for m in mols]
    assert len(set(groups)) == 12
    for seed in range(5):
        parts = scaffold_split(mols, (0.6, 0.15, 0.25), seed=seed)
        assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(60))
        owner = {}
        for name, idx in parts.items():
            for i in idx.tolist():
                assert owner.setdefault(groups[i], name) == name
        assert len(parts["train"]) <= 36 and len(parts["train"]) + len(parts["valid"]) <= 45
        assert {k: v.tolist() for k, v in scaffold_split(mols, seed=seed).items()} == {k: v.tolist()
                                                                                       for k, v in parts.items()}
    with pytest.raises(InputError, match="summing to 1"):
        scaffold_split(mols, (0.5, 0.2, 0.2))
    # a scaffold group larger than half the test share (20 acyclic molecules of 80) is dealt first: it lands in
    # train, never making up most of a held-out part
    acyclic = [f"{'C' * (k + 1)}O" for k in range(20)]
    mols, _ = parse_smiles(smiles + acyclic)
    for seed in range(5):
        parts = scaffold_split(mols, (0.6, 0.15, 0.25), seed=seed)
        assert set(range(60, 80)) <= set(parts["train"].tolist())


def test_property_table_reads_labels_and_names_the_line_of_each_problem(tmp_path: Path) -> None:
    from hypalign.data.molecules import read_property_table

    f = tmp_path / "p.csv"
    f.write_text("name,SMILES,logS,active\nasp,CC(=O)Oc1ccccc1C(=O)O,-1.7,1\nbad,C1CC(,0.5,0\n"
                 "eth,CCO,1.1,\n")
    with pytest.raises(InputError, match=r"p\.csv: line 3: unparsable SMILES 'C1CC\('"):
        read_property_table(f, ["logS"])
    t = read_property_table(f, ["logS", "active"], skip_invalid=True)
    assert t.skipped == 1 and t.smiles == ["CC(=O)Oc1ccccc1C(=O)O", "CCO"] and t.lines.tolist() == [2, 4]
    np.testing.assert_array_equal(t.labels, np.array([[-1.7, 1.0], [1.1, np.nan]], dtype=np.float32))
    with pytest.raises(InputError, match=r"line 1: no column 'pIC50'"):
        read_property_table(f, ["pIC50"])
    f.write_text("smiles\tlogS\nCCO\thigh\n")
    g = f.with_suffix(".tsv")
    f.rename(g)
    with pytest.raises(InputError, match=r"p\.tsv: line 2: column 'logS': 'high' is not a number"):
        read_property_table(g)
    with pytest.raises(InputError, match="no such file"):
        read_property_table(tmp_path / "none.csv")


def write_graph_files(d: Path, nodes: str, edges: str, profile: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "nodes.tsv").write_text(nodes)
    (d / "edges.tsv").write_text(edges)
    if profile is not None:
        (d / "profiles").mkdir(exist_ok=True)
        (d / "profiles" / "morphology.tsv").write_text(profile)
    return d


NODES = ("id\ttype\tsmiles\nm1\tmolecule\tCCO\nm2\tmolecule\tc1ccccc1\nm3\tmolecule\tCC(=O)Oc1ccccc1C(=O)O\n"
         "EGFR\ttarget\t\nGO:0004713\tGO_MF\t\n")
EDGES = "source\ttarget\tweight\nm1\tEGFR\t0.5\nm2\tEGFR\t\nEGFR\tGO:0004713\t1\nm1\tm2\t0.8\nm2\tm1\t0.9\nm3\tm3\t1\n"


def test_context_graph_files_round_trip_with_counts_and_profiles(tmp_path: Path) -> None:
    from hypalign.data.context_graph import read_context_graph, write_context_graph

    d = write_graph_files(tmp_path / "g", NODES, EDGES, "id\tf0\tf1\nm1\t2\t10\nm2\t4\t\nEGFR\t3\t30\n")
    g = read_context_graph(d)
    assert g.counts() == {"nodes": {"GO_MF": 1, "molecule": 3, "target": 1},
                          "edges": {"GO_MF-target": 1, "molecule-molecule": 1, "molecule-target": 2}}
    w = {(g.ids[a], g.ids[b]): x for a, b, x in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist(), strict=True)}
    assert w == pytest.approx({("m1", "m2"): 0.9, ("m1", "EGFR"): 0.5, ("m2", "EGFR"): 1.0,
                               ("EGFR", "GO:0004713"): 1.0})  # the repeated pair keeps 0.9; the self-loop dropped
    nodes, vals = g.profiles["morphology"]
    assert [g.ids[i] for i in nodes.tolist()] == ["m1", "m2", "EGFR"]
    np.testing.assert_allclose(vals, [[0, 0], [1, np.nan], [0.5, 1]])  # min-max per column, missing kept NaN
    assert g.smiles[g.index["m3"]] == "CC(=O)Oc1ccccc1C(=O)O" and len(g.nodes_of("molecule")) == 3
    again = read_context_graph(write_context_graph(g, tmp_path / "copy"), normalise=False)
    assert again.ids == g.ids and again.counts() == g.counts() and again.smiles == g.smiles
    np.testing.assert_allclose(again.weight, g.weight)
    np.testing.assert_allclose(again.profiles["morphology"][1], vals)


@pytest.mark.parametrize(("nodes", "edges", "match"), [
    (NODES, EDGES + "m1\tKRAS\t1\n", r"edges\.tsv: line 8: unknown node 'KRAS'"),
    (NODES, EDGES + "m1\tEGFR\t-2\n", r"edges\.tsv: line 8: weight '-2'; expected a finite number >= 0"),
    (NODES, EDGES + "m1\tEGFR\tstrong\n", r"edges\.tsv: line 8: weight 'strong' is not a number"),
    (NODES + "m1\tmolecule\tCCC\n", EDGES, r"nodes\.tsv: line 7: node id 'm1' already given on line 2"),
    (NODES + "m4\tmolecule\tC1CC(\n", EDGES, r"nodes\.tsv: line 7: unparsable SMILES"),
    (NODES, "source\ttarget\tweight\n", r"edges\.tsv: no edges"),
    ("id\ttype\n", EDGES, r"nodes\.tsv: no nodes"),
    ("name\tkind\n", EDGES, r"nodes\.tsv: line 1: expected a tab-separated header starting with id, type; got name"),
])
def test_context_graph_errors_name_file_and_line(tmp_path: Path, nodes: str, edges: str, match: str) -> None:
    from hypalign.data.context_graph import read_context_graph

    with pytest.raises(InputError, match=match):
        read_context_graph(write_graph_files(tmp_path / "g", nodes, edges))


def test_context_graph_skip_invalid_drops_a_bad_molecule_with_its_edges(tmp_path: Path) -> None:
    from hypalign.data.context_graph import read_context_graph

    d = write_graph_files(tmp_path / "g", NODES + "m4\tmolecule\tC1CC(\n", EDGES + "m4\tEGFR\t1\n")
    g = read_context_graph(d, skip_invalid=True)
    assert g.skipped == 1 and "m4" not in g.index and g.counts()["edges"]["molecule-target"] == 2


def test_random_walks_follow_edges_multiply_weights_and_stop_when_stuck() -> None:
    from hypalign.data.context_graph import build_graph, random_walks

    # a star (centre c, leaves a b d with weights 2, 3, 4), a chain d - e (0.5), and an isolated pair f - g; node h
    # has no edge (a walk from it is stuck at once)
    ids = list("cabdefgh")
    g = build_graph(ids, ["x"] * 8, [("c", "a", 2), ("c", "b", 3), ("c", "d", 4), ("d", "e", 0.5), ("f", "g", 1)])
    indptr, nbr, w = g.adjacency()
    weight = {(g.ids[s], g.ids[t]): x for s, t, x in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist(),
                                                          strict=True)}
    weight.update({(b, a): x for (a, b), x in list(weight.items())})
    starts = torch.tensor([g.index[x] for x in "cabdefgh"] * 500)
    nodes, pw = random_walks(indptr, nbr, w, starts, 4, torch.Generator().manual_seed(0))
    assert nodes.shape == pw.shape == (4000, 5)
    for walk, p in zip(nodes.tolist(), pw.tolist(), strict=True):
        expect = 1.0
        for k in range(1, 5):
            a, b = walk[k - 1], walk[k]
            if a < 0 or (a >= 0 and indptr[a + 1] == indptr[a]):
                assert b == -1 and p[k] == 0.0
                expect = 0.0
                continue
            expect *= weight[(ids[a], ids[b])]
            assert p[k] == pytest.approx(expect)
    assert (nodes[starts == g.index["h"], 1:] == -1).all()
    # from the centre the first step is uniform over its three leaves (weights do not steer it)
    first = nodes[starts == g.index["c"], 1]
    share = torch.bincount(first, minlength=8)[[g.index[x] for x in "abd"]].float() / len(first)
    assert share.tolist() == pytest.approx([1 / 3] * 3, abs=0.07)
    big = torch.full((30_000,), g.index["c"])
    share = torch.bincount(random_walks(indptr, nbr, w, big, 1, torch.Generator().manual_seed(1))[0][:, 1],
                           minlength=8)[[g.index[x] for x in "abd"]].float() / 30_000
    assert share.tolist() == pytest.approx([1 / 3] * 3, abs=0.01)


def test_property_metrics_by_hand_and_the_head_learns_a_linear_property() -> None:
    from hypalign.eval.property import cliff_rmse, fit_head, forest_predictions, property_metrics

    y = np.array([[1.0, np.nan], [2.0, 0.0], [4.0, 1.0]])
    p = np.array([[1.5, 9.0], [2.0, 1.0], [3.0, 1.0]])
    m = property_metrics(p, y, "regression")
    assert m["mae"] == pytest.approx((0.5 + 0 + 1) / 3 / 2 + (1 + 0) / 2 / 2)
    assert m["rmse"] == pytest.approx((np.sqrt((0.25 + 1) / 3) + np.sqrt(0.5)) / 2)
    auc = property_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.0, 0.0, 1.0, 1.0]), "classification")
    assert auc["roc_auc"] == pytest.approx(0.75) and auc["tasks_scored"] == 1
    assert cliff_rmse(np.array([1.0, 2.0, 5.0]), np.array([1.0, 0.0, 1.0]), np.array([False, True, True])) == \
        pytest.approx(np.sqrt((4 + 16) / 2))
    # a linear property of 16 features (scale 100, as a sum readout's): the head beats predicting the train mean
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32) * 100
    w = rng.normal(size=16)
    target = (x / 100 @ w + 0.1 * rng.normal(size=400)).astype(np.float32)[:, None]
    parts = {"train": np.arange(240), "valid": np.arange(240, 300), "test": np.arange(300, 400)}
    pred = fit_head(x, target, parts, "regression", seed=0)
    mean_mae = float(np.mean(np.abs(target[parts["test"]] - target[parts["train"]].mean())))
    got = property_metrics(pred[parts["test"]], target[parts["test"]], "regression")["mae"]
    assert got < 0.25 * mean_mae
    np.testing.assert_array_equal(pred, fit_head(x, target, parts, "regression", seed=0))  # seeded, repeatable
    ridge = forest_predictions(x, target, parts["train"], "regression", model="ridge")
    assert property_metrics(ridge[parts["test"]], target[parts["test"]], "regression")["mae"] < 0.1 * mean_mae
    labels = (target > np.median(target)).astype(np.float32)
    prob = fit_head(x, labels, parts, "classification", seed=1)
    assert property_metrics(prob[parts["test"]], labels[parts["test"]], "classification")["roc_auc"] > 0.9
