"""ProtCLIP parts: tokenizer (ESM-2 ids), encoders (padding invariance, tiny random ESM), objectives
(InfoNCE, entailment cones, term matching) and the model's save/load round trip."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hypalign.encoders.protein import ESM_TOKENS, MASK, ESMEncoder, ResidueCNN, tokenize
from hypalign.errors import InputError
from hypalign.geometry import Lorentz, Sphere
from hypalign.losses.contrastive import clip_loss, entailment_loss, term_matching_loss
from hypalign.models.protclip import ProtCLIP
from protein_fixtures import KINASE, tiny_char_bert, two_families


def esm_dir(tmp: Path) -> Path:
    from transformers import EsmConfig, EsmModel

    cfg = EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=128, pad_token_id=1, mask_token_id=MASK, position_embedding_type="rotary",
                    token_dropout=False)
    torch.manual_seed(0)
    EsmModel(cfg, add_pooling_layer=False).save_pretrained(tmp / "esm")
    (tmp / "esm" / "vocab.txt").write_text("\n".join(ESM_TOKENS))
    return tmp / "esm"


def test_tokenize_matches_the_esm_tokenizer_and_crops(tmp_path: Path) -> None:
    from transformers import EsmTokenizer

    (tmp_path / "vocab.txt").write_text("\n".join(ESM_TOKENS))
    tok = EsmTokenizer(str(tmp_path / "vocab.txt"))
    seqs = ["MKTAYIAKQR", "ACDEFGHIKLMNPQRSTVWYXBUZO"]
    ids, mask = tokenize(seqs, 64)
    for r, s in enumerate(seqs):
        ref = tok(s)["input_ids"]
        assert ids[r, : len(ref)].tolist() == ref and int(mask[r].sum()) == len(ref)
    long = "".join(np.random.default_rng(0).choice(list("ACDEFGHIKLMNPQRSTVWY"), 100))
    ids, _ = tokenize([long], 12, crop="random", rng=np.random.default_rng(1))
    assert ids.shape == (1, 12) and ids[0, 0] == 0 and ids[0, -1] == 2
    inner = "".join(ESM_TOKENS[i] for i in ids[0, 1:-1].tolist())
    assert inner in long and ids[0, 1:-1].tolist() != tokenize([long], 12)[0][0, 1:-1].tolist()


def test_residue_cnn_feature_does_not_depend_on_batch_padding() -> None:
    torch.manual_seed(0)
    cnn = ResidueCNN(dim=16, layers=4).eval()
    alone = cnn(*tokenize(["MKTAYIAKQRQISFVK"], 64))
    padded = cnn(*tokenize(["MKTAYIAKQRQISFVK", "M" * 50], 64))[0]
    torch.testing.assert_close(alone[0], padded, rtol=1e-5, atol=1e-6)
    assert alone.shape == (1, 32)  # mean and max pooling


def test_tiny_random_esm_and_model_round_trip(tmp_path: Path) -> None:
    path = esm_dir(tmp_path)
    enc = ESMEncoder(path, freeze_layers=1)
    assert enc.dim == 32 and not any(p.requires_grad for p in enc.model.encoder.layer[0].parameters())
    model = ProtCLIP(encoder="esm", encoder_path=str(path), text_dim=8, hidden=16, emb_dim=4, n_terms=3).eval()
    ids, mask = tokenize(["MKTAYIAKQR", "MKV"], 32)
    before = model.encode_protein(ids, mask)
    model.save_pretrained(tmp_path / "saved")
    shutil.rmtree(path)  # the saved model carries the architecture; the original directory is not needed
    loaded = ProtCLIP.from_pretrained(str(tmp_path / "saved")).eval()
    torch.testing.assert_close(loaded.encode_protein(ids, mask), before)
    assert Lorentz(1.0).contains(before).all()


def test_esm_encoder_reads_a_masked_lm_quietly_and_refuses_missing_weights(tmp_path: Path, capfd) -> None:
    """A protein-lm run's model/ (EsmForMaskedLM: an LM head the encoder does not use) loads without transformers'
    key report on stderr, with the same encoder weights; a directory missing encoder weights is a one-line error."""
    import json as js

    from transformers import EsmConfig, EsmForMaskedLM

    cfg = EsmConfig(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=128, pad_token_id=1, mask_token_id=MASK, position_embedding_type="rotary",
                    token_dropout=False)
    torch.manual_seed(0)
    lm = EsmForMaskedLM(cfg)
    lm.save_pretrained(tmp_path / "lm")
    capfd.readouterr()
    enc = ESMEncoder(tmp_path / "lm")
    assert "UNEXPECTED" not in capfd.readouterr().err
    torch.testing.assert_close(enc.model.encoder.layer[1].attention.self.query.weight,
                               lm.esm.encoder.layer[1].attention.self.query.weight)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "lm" / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k}, str(tmp_path / "lm" / "model.safetensors"))
    with pytest.raises(InputError, match=r"not an ESM-2 encoder: \d+ weights missing \(e\.g\. encoder\.layer\.1"):
        ESMEncoder(tmp_path / "lm")
    conf = js.loads((tmp_path / "lm" / "config.json").read_text())
    conf["hidden_size"] = 64  # the file's matrices are 32 wide
    (tmp_path / "lm" / "config.json").write_text(js.dumps(conf))
    with pytest.raises(InputError, match="not a loadable ESM-2 model"):
        ESMEncoder(tmp_path / "lm")


def test_clip_loss_by_hand_on_the_sphere_and_with_distances_on_lorentz() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    scale = torch.tensor(0.0)  # exp(0) = 1
    logits = a @ b.T
    ce_rows = -torch.log_softmax(logits, 1).diagonal().mean()
    ce_cols = -torch.log_softmax(logits.T, 1).diagonal().mean()
    assert float(clip_loss(a, b, Sphere(), scale)) == pytest.approx(float(0.5 * (ce_rows + ce_cols)))
    g = Lorentz(1.0)
    x, y = g.expmap0(torch.randn(5, 3)), g.expmap0(torch.randn(5, 3))
    d = torch.stack([g.dist(x[i], y) for i in range(5)])  # (5, 5) paired rows
    ref = 0.5 * (torch.nn.functional.cross_entropy(-2.0 * d, torch.arange(5))
                 + torch.nn.functional.cross_entropy(-2.0 * d.T, torch.arange(5)))
    assert float(clip_loss(x, y, g, torch.tensor(math.log(2.0)))) == pytest.approx(float(ref), rel=1e-5)
    assert float(clip_loss(x, y, g, torch.tensor(10.0))) == float(clip_loss(x, y, g, torch.tensor(math.log(100.0))))


def test_entailment_loss_zero_inside_the_cone_positive_outside() -> None:
    g = Lorentz(1.0)
    general = g.expmap0(torch.tensor([[1.0, 0.0]]))
    inside = g.expmap0(torch.tensor([[2.5, 0.05]]))  # further out, almost the same direction
    outside = g.expmap0(torch.tensor([[0.0, 2.5]]))  # orthogonal direction
    assert float(entailment_loss(general, inside, g)) == 0.0
    want = float(g.oxy_angle(general, outside) - g.half_aperture(general))  # MERU eq. 9 by hand
    assert want > 0.5
    assert float(entailment_loss(general, outside, g)) == pytest.approx(want, rel=1e-6)
    # the Poincaré ball gives the same loss for the same points (the cones module maps them to the Lorentz model)
    from hypalign.geometry import PoincareBall
    from hypalign.geometry.convert import lorentz_to_poincare

    ball = PoincareBall(1.0)
    both = torch.cat([inside, outside])
    assert float(entailment_loss(lorentz_to_poincare(general.expand(2, -1), 1.0), lorentz_to_poincare(both, 1.0),
                                 ball)) == pytest.approx(want / 2, rel=1e-5)
    with pytest.raises(ValueError, match="hyperbolic"):
        entailment_loss(general, inside, Sphere())


def test_term_matching_loss_is_bce_of_scaled_similarity_plus_bias() -> None:
    g = torch.Generator().manual_seed(0)  # seeded: the test's inputs do not depend on the tests that ran before
    p = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=-1)
    y = (torch.rand(3, 5, generator=g) > 0.5).float()
    bias = torch.randn(5, generator=g)
    logit = (10.0 * (p @ t.T) + bias).double()  # the reference in float64 (the naive log(1 - sigmoid) loses digits)
    ref = -(y * torch.log(torch.sigmoid(logit)) + (1 - y) * torch.log(1 - torch.sigmoid(logit))).mean()
    assert float(term_matching_loss(p, t, y, Sphere(), torch.tensor(math.log(10.0)), bias)) == pytest.approx(
        float(ref), rel=1e-5)


def test_entailment_term_logits_are_the_cone_margin_in_both_hyperbolic_models() -> None:
    from hypalign.geometry import PoincareBall
    from hypalign.geometry.cones import cone_margin_matrix as cone_margin
    from hypalign.geometry.convert import lorentz_to_poincare
    from hypalign.losses.contrastive import term_matching_logits

    lor = Lorentz(0.5)
    gen = torch.Generator().manual_seed(0)
    terms = lor.expmap0(0.5 * torch.randn(5, 4, generator=gen, dtype=torch.float64))
    prots = lor.expmap0(2.0 * torch.randn(3, 4, generator=gen, dtype=torch.float64))
    margin = lor.half_aperture(terms)[None, :] - lor.oxy_angle(terms[None, :, :], prots[:, None, :])
    bias = torch.randn(5, dtype=torch.float64)
    logits = term_matching_logits(prots, terms, lor, torch.tensor(math.log(7.0)), bias, score="entailment")
    torch.testing.assert_close(logits.double(), 7.0 * margin + bias, rtol=1e-5, atol=1e-5)
    # the same points in the Poincaré ball: the same cones
    ball = PoincareBall(0.5)
    m_ball = cone_margin(lorentz_to_poincare(terms, 0.5), lorentz_to_poincare(prots, 0.5), ball)
    torch.testing.assert_close(m_ball.double(), margin, rtol=1e-4, atol=1e-4)
    # bounded whatever the norms: a protein far out shifts no logit towards -inf
    far = lor.expmap0(torch.tensor([[30.0, 0.0, 0.0, 0.0]], dtype=torch.float64))
    assert bool((cone_margin(terms, far, lor) >= -math.pi - 1e-6).all())
    with pytest.raises(ValueError, match="hyperbolic"):
        cone_margin(terms.float(), prots.float(), Sphere())
    with pytest.raises(ValueError, match="term score"):
        term_matching_logits(prots, terms, lor, torch.tensor(0.0), bias, score="cosine")


def test_transfer_reference_votes_of_nearest_training_proteins_and_round_trip(tmp_path: Path) -> None:
    import scipy.sparse as sp

    from hypalign.search.transfer import TransferReference

    lor = Lorentz(1.0)
    centres = torch.tensor([[3.0, 0.0], [-3.0, 0.0]])
    train = lor.expmap0(torch.cat([centres[0] + 0.1 * torch.randn(4, 2), centres[1] + 0.1 * torch.randn(4, 2)]))
    y = sp.csr_matrix(np.array([[1, 1, 0]] * 4 + [[1, 0, 1]] * 4, dtype=np.float32))
    ref = TransferReference(train, {"MF": y}, k=3, tau={"MF": 0.05}, alpha={"MF": 0.25}, ks={"MF": 2})
    queries = lor.expmap0(centres)
    tr = ref.transfer(queries, lor, ("MF",))["MF"]
    np.testing.assert_allclose(tr, [[1, 1, 0], [1, 0, 1]], atol=1e-6)  # each query among its own cluster
    term = {"MF": np.full((2, 3), 0.4, dtype=np.float32)}
    np.testing.assert_allclose(ref.combine(term, {"MF": tr})["MF"][0], 0.25 * tr[0] + 0.75 * 0.4, rtol=1e-6)
    ref.save(tmp_path)
    back = TransferReference.load(tmp_path)
    assert back is not None and back.k == 3 and back.tau == ref.tau and back.alpha == ref.alpha and back.ks == ref.ks
    torch.testing.assert_close(back.embeddings, train)
    assert (back.labels["MF"] != y).nnz == 0
    assert TransferReference.load(tmp_path / "none") is None
    (tmp_path / "transfer.safetensors").write_bytes(b"junk")
    with pytest.raises(InputError, match="transfer"):
        TransferReference.load(tmp_path)


def test_homology_head_is_a_separate_unit_sphere_trained_by_the_homolog_pairs_alone() -> None:
    """With ``homology_head`` the homolog InfoNCE reaches the encoder and the head, never the GO projection;
    without it, the search space is the shared one."""
    from hypalign.losses.contrastive import clip_loss
    from hypalign.models.protclip import ProtCLIP

    torch.manual_seed(0)
    ids = torch.randint(4, 24, (6, 20))
    batch = {"ids": ids, "mask": torch.ones_like(ids, dtype=torch.bool), "desc": torch.randn(6, 12),
             "pair_ids": ids.roll(1, 0), "pair_mask": torch.ones_like(ids, dtype=torch.bool)}
    m = ProtCLIP(cnn_dim=16, cnn_layers=2, text_dim=12, hidden=32, emb_dim=8, homology=True, homology_head=True)
    f = m(batch)
    assert isinstance(m.search_geometry, Sphere) and isinstance(m.geometry, Lorentz)
    assert torch.allclose(f["protein_search"].norm(dim=-1), torch.ones(6), atol=1e-5)
    assert torch.allclose(f["pair"], m.encode_protein_search(ids.roll(1, 0), batch["mask"])[1])
    assert torch.allclose(f["protein"], m.encode_protein(ids, batch["mask"]))
    clip_loss(f["protein_search"], f["pair"], m.search_geometry, m.homology_logit_scale).backward()
    assert all(p.grad is None for p in m.protein_proj.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.homology_proj.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.protein_encoder.parameters())
    shared = ProtCLIP(cnn_dim=16, cnn_layers=2, text_dim=12, hidden=32, emb_dim=8, homology=True)
    g = shared(batch)
    assert shared.search_geometry is shared.geometry and g["protein_search"] is g["protein"]
    with pytest.raises(ValueError, match="homology_head needs homology"):
        ProtCLIP(cnn_dim=16, cnn_layers=2, text_dim=12, hidden=32, emb_dim=8, homology_head=True)


def test_mlm_and_span_masking_cover_residues_only() -> None:
    from hypalign.encoders.protein import mask_residues, mask_spans, residue_mask

    ids, _ = tokenize(["MKTAYIAKQRQISFVKSHFSRQ" * 5, "MKV"], 64)
    rm = residue_mask(ids)
    rng = np.random.default_rng(0)
    masked, labels = mask_residues(ids, 0.15, rng)
    picked = labels != -100
    assert bool((picked <= rm).all()) and bool((masked[picked] == MASK).all())
    assert bool((labels[picked] == ids[picked]).all()) and bool((masked[~picked] == ids[~picked]).all())
    assert int(picked[1].sum()) >= 1  # a 3-residue protein still predicts one residue
    assert 0.05 < float(picked[0].sum()) / float(rm[0].sum()) < 0.3
    masked, labels = mask_spans(ids, 0.15, 10, np.random.default_rng(1))
    picked = labels != -100
    n0 = int(rm[0].sum())
    assert bool((picked <= rm).all()) and int(picked[0].sum()) >= math.ceil(0.15 * n0)
    # contiguous spans: far fewer runs than masked residues
    row = picked[0].int()
    runs = int(((row[1:] - row[:-1]) == 1).sum()) + int(row[0])
    assert runs <= int(picked[0].sum()) // 4


def test_segment_alignment_by_hand() -> None:
    from hypalign.losses.contrastive import dynamic_segments, segment_alignment_loss

    u = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two properties
    res = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False]])  # the last position is padding
    g = dynamic_segments(u, res, mask, theta=0.3)
    # property 0: S = [2, 1, 0] -> min-max [1, .5, 0] -> w = [2/3, 1/3, 0]; property 1: S = [0, 0, 3] -> [0, 0, 1]
    torch.testing.assert_close(g[0, 0], torch.tensor([5 / 3, 0.0]))
    torch.testing.assert_close(g[0, 1], torch.tensor([0.0, 3.0]))
    # g_k is parallel to u_k: cosine matrix = identity; loss = CE with logits 10*I, both directions
    ref = -torch.log_softmax(torch.tensor([10.0, 0.0]), 0)[0]
    loss = segment_alignment_loss(u, res, mask, torch.tensor(math.log(10.0)), theta=0.3)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)


def test_train_protclip_then_predict_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                char_bert: tuple[Path, Path]) -> None:
    """Made-up proteins with real GO terms, a tiny text encoder and a tiny CNN: a few steps of training, the
    run directory, evaluation on valid/test, and `hypalign predict` on a FASTA (plus its record-named error)."""
    import json as js

    from typer.testing import CliRunner

    from hypalign.cli.main import app
    from hypalign.data.go_split import prepare_go_split
    from hypalign.data.protein import GODataset
    from hypalign.data.splits import Split
    from hypalign.recipes.protclip import ProtCLIPConfig, train_protclip
    from hypalign.train import TrainConfig

    text, cache = char_bert
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(cache))
    accs, seqs, terms = two_families()
    data = GODataset(accs, seqs, terms)
    split = Split(accs[:32], accs[32:40], accs[40:])
    gsd = prepare_go_split(split, data=data)
    cfg = ProtCLIPConfig(cnn_dim=16, cnn_layers=2, hidden=32, emb_dim=8, text_path=str(text), batch_size=8,
                         max_len=64, negative_terms=32)
    tc = TrainConfig(run_dir=str(tmp_path / "run"), epochs=2, lr=3e-3, progress=False, log_every=2, threads=1,
                     eval_every=1)
    out = train_protclip(cfg, tc, gsd=gsd)
    assert out["steps"] == 8 and set(out) >= {"valid", "test"}
    # eval.json holds exactly what train returned, and the saved model alone reproduces every figure of it:
    # ProtCLIP.from_pretrained brings its transfer reference along (no bolting on by a run loader)
    saved = js.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["test"] == out["test"] and saved["valid"] == out["valid"]
    from hypalign.eval.function import summarise_metrics
    from hypalign.models.protclip import ProtCLIP
    from hypalign.recipes.protclip import predict_scores, term_table

    alone = ProtCLIP.from_pretrained(str(tmp_path / "run" / "model")).eval()
    assert alone.transfer_reference is not None
    _, offset, feats = term_table(gsd.ontologies, str(text), model=alone)
    for part in ("valid", "test"):
        scores = predict_scores(alone, gsd.sequences(part), gsd.ontologies, feats, offset, cfg.eval_max_len,
                                alone.transfer_reference)
        again = summarise_metrics(gsd, part, scores)
        assert again.keys() == out[part].keys()
        for k, v in again.items():
            assert v == pytest.approx(out[part][k], abs=1e-6), (part, k)
    lines = [js.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/fmax" in x for x in lines) and all(np.isfinite(x.get("loss", 0.0)) for x in lines)
    assert {"gc", "term", "entail", "homology"} <= set(lines[0])
    # the nearest-neighbour reference is saved with the model; eval.json keeps the term scores alone as well
    assert (tmp_path / "run" / "model" / "transfer.safetensors").is_file()
    assert set(out["transfer"]["alpha"]) == {"BP", "MF", "CC"} and "BP/fmax" in out["term_only"]["test"]
    assert all(k in (25, 32) for k in out["transfer"]["ks"].values())  # 25, or all 32 training proteins

    # the split's table (`hypalign protein baselines --run`): the run's model scores as eval.json says, next to
    # the baselines and model + DIAMOND (the made-up families share their cores: DIAMOND finds them)
    from hypalign.errors import InputError
    from hypalign.recipes.protclip import compare_runs

    table = compare_runs([tmp_path / "run"], gsd=gsd, threads=1)
    assert list(table["metrics"]) == ["model (lorentz)", "frequency", "diamond", "diamond+frequency",
                                      "model (lorentz) + DIAMOND"]
    assert table["n_test"] == 8 and table["diamond_coverage"] == 1.0
    for o in ("BP", "MF", "CC"):
        assert table["metrics"]["model (lorentz)"][o]["fmax"] == pytest.approx(out["test"][f"{o}/fmax"])
        assert table["metrics"]["model (lorentz)"][o]["mrr"] == pytest.approx(out["test"][f"{o}/mrr"])
        assert table["metrics"]["diamond"][o]["fmax"] == 1.0  # one term per family, every test protein has a hit
        assert "aupr" in table["metrics"]["model (lorentz) + DIAMOND"][o]
    other = tmp_path / "other"
    other.mkdir()
    cfg_json = js.loads((tmp_path / "run" / "config.json").read_text())
    cfg_json["protclip"]["split"] = "small-random"
    (other / "config.json").write_text(js.dumps(cfg_json))
    with pytest.raises(InputError, match="different splits"):
        compare_runs([tmp_path / "run", other], gsd=gsd)
    # the run records its split's fingerprint and is never scored on another split of the same name
    assert cfg_json["protclip"]["split_fingerprint"] == split.fingerprint() != Split(accs[:30], accs[30:40],
                                                                                       accs[40:]).fingerprint()
    moved = prepare_go_split(Split(accs[:30], accs[30:40], accs[40:]), data=data)
    with pytest.raises(InputError, match=r"was trained on split small-hard with fingerprint [0-9a-f]{16}, but"):
        compare_runs([tmp_path / "run"], gsd=moved)

    # metrics on a subset of the proteins equal those of a split holding only that subset
    from hypalign.eval.function import evaluate_scores

    sc = np.random.default_rng(1).random(gsd.truth["MF"]["test"].shape).astype(np.float32)
    half = np.arange(len(sc)) % 2 == 0
    sub = prepare_go_split(Split(accs[:32], accs[32:40], [a for a, h in zip(accs[40:], half, strict=True) if h]),
                           data=data)
    assert evaluate_scores(gsd, "MF", "test", sc, rows=half) == evaluate_scores(sub, "MF", "test", sc[half])
    assert evaluate_scores(gsd, "MF", "test", sc, fmax_only=True, rows=half)["fmax"] == pytest.approx(
        evaluate_scores(sub, "MF", "test", sc[half])["fmax"])

    # property-driven sampling: proteins with PE=4 (or only one property) never reach a batch
    from dataclasses import replace

    from hypalign.recipes.protclip import ProtCLIPTask

    pe = [1 if i % 3 else 4 for i in range(48)]
    gsd_pe = prepare_go_split(split, data=GODataset(accs, seqs, terms, existence=pe, named=[True] * 48))
    task = ProtCLIPTask(replace(cfg, sampling="property"), gsd=gsd_pe)
    drawn = set(np.concatenate([b[:-1].numpy() for b in task.batches(0)]).tolist())
    train_pe = [pe[i] for i in gsd_pe.rows["train"].tolist()]
    assert drawn and all(train_pe[r] == 1 for r in drawn)

    # ProtCLIP's own objectives on the same data: every loss logged, finite, and the run predicts
    cfg_all = ProtCLIPConfig(cnn_dim=16, cnn_layers=2, hidden=32, emb_dim=8, text_path=str(text), batch_size=8,
                             max_len=64, negative_terms=32, objectives="paper,term,entail,hierarchy,homology",
                             n_prototypes=16,
                             transfer_k=0)
    tc_all = TrainConfig(run_dir=str(tmp_path / "run-all"), epochs=1, lr=3e-3, progress=False, log_every=1,
                         threads=1, eval_every=0)
    out_all = train_protclip(cfg_all, tc_all, gsd=gsd)
    rows_all = [js.loads(x) for x in (tmp_path / "run-all" / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in rows_all if "loss" in x]
    assert {"gc", "term", "entail", "hierarchy", "homology", "mlm", "bsr", "pda"} <= set(logged[0])
    assert all(np.isfinite(x[k]) for x in logged for k in ("hierarchy", "homology", "mlm", "bsr", "pda"))
    assert logged[0]["mlm"] == pytest.approx(math.log(33), rel=0.3)  # ~uniform over the 33 ESM classes at first
    assert "transfer" not in out_all and "term_only" not in out_all  # transfer_k=0: the term scores alone
    from hypalign.recipes.protclip import load_protclip_run

    back, back_cfg = load_protclip_run(tmp_path / "run-all")  # the objective heads are rebuilt and loaded
    assert back.transfer_reference is None and hasattr(back, "mlm_head") and hasattr(back, "prototype_bank")
    from hypalign.eval.function import summarise_metrics
    from hypalign.recipes.protclip import run_scores

    again = summarise_metrics(gsd, "test", run_scores(back, back_cfg, gsd, ("test",))[2]["test"])
    for k, v in again.items():  # the reloaded model scores the test proteins exactly as at the end of training
        assert v == pytest.approx(out_all["test"][k], abs=1e-6), k

    # homology partners: each protein's partner crop comes from one of its DIAMOND homologs among the
    # training proteins (here: its made-up family), or from itself when it has none
    from hypalign.encoders.protein import ESM_TOKENS

    task = ProtCLIPTask(replace(cfg, objectives="gc,homology"), gsd=gsd)
    indptr, targets, _ = task.homologs
    train_seqs = gsd.sequences("train")
    fam = [train_seqs[r].endswith(KINASE) for r in range(len(train_seqs))]
    assert all(fam[int(t)] == fam[r] for r in range(len(fam)) for t in targets[indptr[r] : indptr[r + 1]])
    for spec in task.batches(0):
        b = task.make_batch(spec)
        for r, ids in zip(spec[:-1].tolist(), b["pair_ids"].tolist(), strict=True):
            crop = "".join(ESM_TOKENS[t] for t in ids if t > 3)
            allowed = [int(t) for t in targets[indptr[r] : indptr[r + 1]]] or [r]
            assert any(crop in train_seqs[t] for t in allowed)

    # a separate homology head: homologs pair up (and the transfer searches) on its unit sphere; the saved
    # reference is the training proteins there, and the reloaded run scores the test proteins as training did
    from hypalign.eval.function import summarise_metrics
    from hypalign.recipes.protclip import embed_protein_spaces, run_scores

    tc_head = TrainConfig(run_dir=str(tmp_path / "run-head"), epochs=1, lr=3e-3, progress=False, threads=1,
                          eval_every=0)
    out_head = train_protclip(replace(cfg, homology_head=True), tc_head, gsd=gsd)
    back, back_cfg = load_protclip_run(tmp_path / "run-head")
    assert hasattr(back, "homology_proj") and isinstance(back.search_geometry, Sphere)
    ref = back.transfer_reference.embeddings
    assert ref.shape == (32, 8) and torch.allclose(ref.norm(dim=-1), torch.ones(32), atol=1e-5)
    assert torch.allclose(ref, embed_protein_spaces(back, gsd.sequences("train"))[1], atol=1e-5)
    again = summarise_metrics(gsd, "test", run_scores(back, back_cfg, gsd)[2]["test"])
    assert again == pytest.approx(out_head["test"])

    # predict needs the GO graph's full term list, which the made-up split's training used as well
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">sp|Q1|K_HUMAN kinase-like\n{seqs[0]}\n>Q2\n{seqs[1]}\n")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--fasta", str(fasta), "--top", "3", "--json"])
    assert res.exit_code == 0, res.output
    rows = [js.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [r["id"] for r in rows] == ["Q1", "Q2"]
    from hypalign.recipes.protclip import load_protclip_run as _load
    from hypalign.recipes.protclip import predict_go

    model_p, cfg_p = _load(tmp_path / "run")
    want = predict_go(model_p, cfg_p, [seqs[0], seqs[1]], top=3)  # the CLI prints what the Python API returns
    for r, w in zip(rows, want, strict=True):
        for o in ("BP", "MF", "CC"):
            assert [t["term"] for t in r[o]] == [t for t, _, _ in w[o]]
            assert [t["score"] for t in r[o]] == [round(x, 5) for _, _, x in w[o]]
            assert r[o][0]["score"] >= r[o][-1]["score"]
    # ancestors score at least as high as their descendants (scores propagated): the root is first
    assert rows[0]["MF"][0]["term"] == "GO:0003674"
    fasta.write_text(">Q3\nMK1V\n")
    bad = runner.invoke(app, ["predict", str(tmp_path / "run"), "--fasta", str(fasta)])
    assert bad.exit_code == 2 and "record 'Q3'" in bad.output and "not amino acids" in bad.output


def test_a_pre_trained_protein_tower_tuned_frozen_or_frozen_below(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   char_bert: tuple[Path, Path]) -> None:
    """``--encoder DIR --encoder-freeze N``: the tower's embeddings and first N layers keep their pre-trained
    weights through training (-1: all of it), the rest trains; the CNN has nothing to freeze (one-line error)."""
    from hypalign.data.go_split import prepare_go_split
    from hypalign.data.protein import GODataset
    from hypalign.data.splits import Split
    from hypalign.recipes.protclip import ProtCLIPConfig, train_protclip
    from hypalign.train import TrainConfig

    text, cache = char_bert
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(cache))
    path = esm_dir(tmp_path)
    accs, seqs, terms = two_families()
    gsd = prepare_go_split(Split(accs[:32], accs[32:40], accs[40:]), data=GODataset(accs, seqs, terms))
    start = {k: v.clone() for k, v in ESMEncoder(path).model.state_dict().items()}
    for freeze, fixed_layers in ((-1, 2), (1, 1), (0, 0)):
        cfg = ProtCLIPConfig(encoder=str(path), encoder_freeze=freeze, hidden=32, emb_dim=8, text_path=str(text),
                             batch_size=8, max_len=64, negative_terms=32, objectives="gc,term", transfer_k=0)
        holder: dict = {}
        train_protclip(cfg, TrainConfig(run_dir=str(tmp_path / f"run{freeze}"), epochs=1, lr=1e-2, progress=False,
                                        threads=1, eval_every=0), gsd=gsd, keep_task=holder)
        after = holder["task"].model.protein_encoder.model.state_dict()
        for k, v in start.items():
            layer = int(k.split(".")[2]) if k.startswith("encoder.layer.") else None
            frozen = freeze == -1 or (freeze > 0 and (k.startswith("embeddings.") or (layer is not None
                                                                                      and layer < fixed_layers)))
            if k.endswith("inv_freq") or k.startswith("contact_head."):  # a buffer; a head no objective uses
                continue
            assert torch.equal(after[k], v) == frozen, (freeze, k)
        if freeze == -1:  # frozen whole: proteins read whole (not cropped), each through the trunk once
            task = holder["task"]
            batch = task.make_batch(task.batches(0)[0])
            rows = task.gsd.rows["train"][task.batches(0)[0][:-1].numpy()]
            assert batch["ids"].shape[1] == max(len(seqs[i]) for i in rows.tolist()) + 2
            enc = task.model.protein_encoder
            assert len(enc._memo) == len(set(seqs))  # train, valid, test: every distinct sequence once
            calls = []
            hook = enc.model.register_forward_hook(lambda *a, c=calls: c.append(1))
            remembered = enc(batch["ids"], batch["mask"])
            assert calls == []
            enc.memoize(False)
            enc.eval()  # remembered in eval mode (this config has dropout)
            assert torch.allclose(remembered, enc(batch["ids"], batch["mask"]), atol=1e-5) and calls == [1]
            hook.remove()
    with pytest.raises(InputError, match="encoder freeze: needs a pre-trained encoder"):
        train_protclip(ProtCLIPConfig(encoder_freeze=-1), TrainConfig(run_dir=str(tmp_path / "cnn")))


def test_partially_annotated_proteins_train_on_what_they_have_and_count_where_annotated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, char_bert: tuple[Path, Path]) -> None:
    """Per-ontology data (CAFA's convention): a protein without MF terms is a valid member of a split. Its MF terms are
    masked out of L_term (unknown, not negative: the masked BCE by hand), the per-term prior counts the annotated
    proteins only, each ontology is evaluated on the test proteins annotated in it, and training runs end to end."""
    from hypalign.data.go_split import prepare_go_split
    from hypalign.data.protein import GODataset
    from hypalign.data.splits import Split
    from hypalign.eval.function import evaluate_scores
    from hypalign.recipes.protclip import ProtCLIPConfig, train_protclip
    from hypalign.recipes.protclip.task import ProtCLIPTask
    from hypalign.train import TrainConfig

    text, cache = char_bert
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(cache))
    accs, seqs, terms = two_families()
    no_mf = np.arange(len(accs)) % 3 == 0
    no_cc = np.arange(len(accs)) % 5 == 1
    terms["MF"] = [[] if no_mf[i] else t for i, t in enumerate(terms["MF"])]
    terms["CC"] = [[] if no_cc[i] else t for i, t in enumerate(terms["CC"])]
    gsd = prepare_go_split(Split(accs[:32], accs[32:40], accs[40:]), data=GODataset(accs, seqs, terms))
    np.testing.assert_array_equal(gsd.annotated("MF", "train"), ~no_mf[:32])
    np.testing.assert_array_equal(gsd.annotated("CC", "test"), ~no_cc[40:])
    cfg = ProtCLIPConfig(cnn_dim=16, cnn_layers=2, hidden=32, emb_dim=8, text_path=str(text), batch_size=8,
                         max_len=64, negative_terms=32, objectives="gc,term,entail")
    task = ProtCLIPTask(cfg, seed=0, gsd=gsd)
    spec = task.batches(0)[0]
    batch = task.make_batch(spec)
    rows = spec[:-1].numpy()
    onts = list(gsd.ontologies)
    ont_of = np.searchsorted(np.array([task.offset[o] for o in onts]), batch["cand"].numpy(), side="right") - 1
    known = np.stack([gsd.annotated(o, "train") for o in onts], 1)[rows][:, ont_of]
    np.testing.assert_array_equal(batch["label_known"].numpy(), known.astype(np.float32))
    assert (batch["labels"].numpy()[~known] == 0).all() and not known.all()
    out = task.model(batch)
    logits = task.model.term_logits(out["protein"], out["terms"], batch["cand"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"], reduction="none")
    by_hand = bce[torch.from_numpy(known)].mean()
    torch.testing.assert_close(task.objectives.parts["term"].compute(out, batch, task.model), by_hand)
    # the prior: kinase activity (MF) among the training proteins annotated in MF, not among all 32
    kinase = task.offset["MF"] + gsd.ontologies["MF"].index["GO:0016301"]
    share = sum(1 for i in range(32) if i % 2 == 0 and not no_mf[i]) / int((~no_mf[:32]).sum())
    assert float(task.model.term_bias[kinase].detach()) == pytest.approx(math.log(share / (1 - share)), abs=1e-5)
    # evaluation counts each ontology's annotated test proteins
    sc = np.random.default_rng(0).random(gsd.truth["MF"]["test"].shape)
    assert evaluate_scores(gsd, "MF", "test", sc)["n_proteins"] == int((~no_mf[40:]).sum())
    # fully annotated proteins: no mask in the batch, the plain mean as before
    full = ProtCLIPTask(cfg, seed=0, gsd=prepare_go_split(Split(accs[:32], accs[32:40], accs[40:]),
                                                          data=GODataset(*two_families())))
    assert "label_known" not in full.make_batch(full.batches(0)[0])
    res = train_protclip(cfg, TrainConfig(run_dir=str(tmp_path / "run"), epochs=1, lr=3e-3, progress=False,
                                          threads=1, eval_every=0), gsd=gsd)
    assert np.isfinite([res["test"][f"{o}/fmax"] for o in onts]).all()


@pytest.mark.slow
def test_protclip_on_swissprot_small_random_two_steps_then_eval_run(tmp_path: Path) -> None:
    """Real data path: small-random split, shipped MiniLM term features, 2 training steps, then
    `hypalign eval RUN` recomputes the test metrics from the saved model (several minutes on a fresh cache)."""
    from typer.testing import CliRunner

    from hypalign.cli.main import app

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "protclip", "--split", "small-random", "-o", str(run), "--max-steps", "2",
                                   "--no-progress", "--json", "--eval-every", "0", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    ev = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert ev.exit_code == 0, ev.output
    import json as js

    metrics = js.loads(ev.stdout.strip().splitlines()[-1])
    assert 0.0 < metrics["MF/fmax"] <= 1.0 and 0.0 < metrics["CC/mrr"] <= 1.0
    # scored on another split (here: one training protein moved to test) -> a clear error, not silent leakage
    from hypalign.data.splits import load_split, write_split

    s = load_split("small-random")
    write_split(tmp_path / "other", {"train": s.train[1:], "valid": s.valid, "test": [s.train[0], *s.test]}, {})
    bad = CliRunner().invoke(app, ["eval", str(run), "--split", str(tmp_path / "other")])
    assert bad.exit_code == 2 and "fingerprint" in bad.output


def test_protclip_under_ddp_two_gloo_processes(tmp_path: Path) -> None:
    """The towers run through DDP's forward; gathered InfoNCE + MLM gradients equal one process's over the
    global batch (Lorentz, sphere, Lorentz with a homology head); each global batch is dealt to the ranks
    without overlap."""
    import json as js
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = Path(__file__).parent / "ddp_protclip_check.py"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script), str(tmp_path)], env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    r0, r1 = (js.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["world"] == 2
    for geometry in ("lorentz", "sphere", "lorentz+head"):
        assert r0[geometry]["gc"] == pytest.approx(r1[geometry]["gc"], rel=1e-6)  # both see the global batch
        for r in (r0, r1):
            assert r[geometry]["grad_err"] <= 1e-5 * r[geometry]["grad_scale"]
    for b0, b1 in zip(r0["batches"], r1["batches"], strict=True):
        assert len(b0) == len(b1) == 8 and not set(b0) & set(b1)


@pytest.mark.parametrize(("options", "message"), [
    (["--objectives", "gc,mlmx"], "objective 'mlmx'"),
    (["--objectives", "mlm,bsr"], "need gc or term"),
    (["--objectives", "gc,hierarchy", "--geometry", "sphere"], "'hierarchy' needs a hyperbolic geometry"),
    (["--term-score", "cosine"], "--term-score 'cosine': expected one of auto, similarity, entailment"),
    (["--sampling", "random"], "--sampling 'random': expected one of uniform, property"),
    (["--objectives", "gc:x"], "the weight after ':' must be a number"),
    (["--w-mlm", "0.5"], "--w-mlm: objective 'mlm' is not among the objectives"),
    (["--set", "emb_dim=x"], "emb_dim: expected an integer"),
    (["--set", "nope=1"], "nope: no such option of recipe protclip"),
    (["--homology-head", "--w-homology", "0"], "homology head: needs the homology objective"),
    (["--text-tune", "1", "--description", "text"], "text tune: needs --description terms"),
    (["--text-tune", "1", "--objectives", "gc,term,hierarchy"], "objective(s) hierarchy read frozen"),
])
def test_train_protclip_rejects_bad_options_before_loading_data(tmp_path: Path, options: list[str],
                                                                message: str) -> None:
    from typer.testing import CliRunner

    from hypalign.cli.main import app

    r = CliRunner().invoke(app, ["train", "protclip", "-o", str(tmp_path / "r"), *options, "--no-progress"])
    assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1, r.output


def test_cone_objectives_apply_in_hyperbolic_geometries_only() -> None:
    from hypalign.recipes.protclip import ProtCLIPConfig, resolve_objectives

    def names(**kw: object) -> tuple[str, ...]:
        return resolve_objectives(ProtCLIPConfig(**kw)).names  # type: ignore[arg-type]

    assert names(geometry="lorentz") == ("gc", "term", "entail", "homology")
    assert names(geometry="poincare") == ("gc", "term", "entail", "homology")  # the cones module covers the ball
    assert names(geometry="sphere") == ("gc", "term", "homology")
    assert names(geometry="poincare", objectives="paper") == ("gc", "mlm", "bsr", "pda")
    assert names(objectives="gc,term,entail:0,homology") == ("gc", "term", "homology")
    assert names(objectives="homology:0,entail,term,gc") == ("gc", "term", "entail")  # menu order, weight 0 out
    objs = resolve_objectives(ProtCLIPConfig(objectives="gc:2,term,entail:0.5", pda_theta=0.4))
    assert objs.weights() == {"gc": 2.0, "term": 1.0, "entail": 0.5}
    assert resolve_objectives(ProtCLIPConfig(objectives="gc,pda", pda_theta=0.4)).parts["pda"].theta == 0.4


def test_draw_homologs_prefers_remote_partners_when_asked() -> None:
    """``homology_remote`` = p: a partner among the protein's < 40 %-identity homologs with probability p
    (where it has any), else uniform over all its homologs; a protein without homologs pairs with itself."""
    from hypalign.objectives.miners import REMOTE_IDENTITY, draw_homologs

    # protein 0: homologs 1 (90 %), 2 (35 %), 3 (25 %); 1: only 0 (90 %); 2: none; 3: only 0 (25 %)
    indptr = np.array([0, 3, 4, 4, 5])
    targets = np.array([1, 2, 3, 0, 0])
    pident = np.array([90.0, 35.0, 25.0, 90.0, 25.0], np.float32)
    homologs = (indptr, targets, pident)
    rows = np.repeat(np.arange(4), 3000)
    rng = np.random.default_rng(0)
    far = draw_homologs(homologs, rows, rng, remote=1.0)
    assert set(far[rows == 0].tolist()) == {2, 3}  # never the 90 % homolog
    assert (far[rows == 1] == 0).all() and (far[rows == 2] == 2).all() and (far[rows == 3] == 0).all()
    assert all(pident[indptr[0]:indptr[1]][targets[indptr[0]:indptr[1]] == t][0] < REMOTE_IDENTITY
               for t in far[rows == 0].tolist())
    uniform = draw_homologs(homologs, rows, rng, remote=0.0)
    share = np.bincount(uniform[rows == 0], minlength=4)[1:] / 3000
    assert np.allclose(share, 1 / 3, atol=0.04)
    half = draw_homologs(homologs, rows, rng, remote=0.5)  # P(90 % homolog) = 0.5 * 1/3
    assert abs(np.mean(half[rows == 0] == 1) - 1 / 6) < 0.03
    with pytest.raises(InputError, match=r"--homology-remote 1\.5: expected a value in"):
        from hypalign.recipes.protclip import ProtCLIPConfig, check_config

        check_config(ProtCLIPConfig(homology_remote=1.5))


def test_tuned_text_layers_start_at_the_frozen_sentence_embedding(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Token states below the top layer (cached once) + the pretrained top layer, pooled = the frozen encoder's
    sentence embedding (float16 states: to 2e-3); asking for more layers than the encoder has is an error."""
    import json as js

    from transformers import AutoConfig

    from hypalign.encoders.text import SentenceEncoder, gather_token_states, token_states_cached
    from hypalign.errors import InputError
    from hypalign.models.protclip import TunedTextLayers

    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path / "cache"))
    bert = tiny_char_bert(tmp_path / "bert", layers=3)
    texts = ["protein kinase activity", "atp binding", "regulation of transcription, dna-templated", "membrane"]
    states, offsets = token_states_cached(texts, bert, tuned_layers=1)
    assert states.dtype == np.float16 and len(offsets) == 5 and offsets[-1] == len(states)
    again = token_states_cached(texts, bert, tuned_layers=1)  # from the cache
    np.testing.assert_array_equal(again[0], states)
    config = js.loads(AutoConfig.from_pretrained(bert).to_json_string())
    layers = TunedTextLayers(config, 1)
    layers.load_pretrained_layers(str(bert))
    layers.eval()
    tokens, lengths = gather_token_states(states, offsets, np.arange(4))
    with torch.no_grad():
        ours = layers.forward_packed(tokens, lengths).numpy()
    ref = SentenceEncoder(bert).encode(texts)
    err = float(np.abs(ours - ref).max())
    assert err < 2e-3
    untrained = TunedTextLayers(config, 1).eval()  # another random top layer: a different embedding
    with torch.no_grad():
        assert float(np.abs(untrained.forward_packed(tokens, lengths).numpy() - ref).max()) > 3 * err
    with pytest.raises(InputError, match="has 3 layers; tune 1 to 3, not 4"):
        token_states_cached(texts, bert, tuned_layers=4)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=12), chunk=st.integers(1, 5),
       rows=st.randoms(use_true_random=False))
def test_packed_text_layers_equal_each_text_alone(lengths: list[int], chunk: int, rows: random.Random) -> None:
    """forward_packed (texts bucketed by length, each chunk padded to its own longest, any chunk size) gives
    every text's features as forward on that text alone, in the input order; gather_token_states packs the
    asked-for rows of a cache, in the asked-for order, repeats allowed."""
    from transformers import BertConfig

    from hypalign.encoders.text import gather_token_states
    from hypalign.models.protclip import TunedTextLayers

    torch.manual_seed(0)
    config = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32).to_dict()
    layers = TunedTextLayers(config, 2).eval()
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    states = np.random.default_rng(len(lengths)).normal(size=(offsets[-1], 16)).astype(np.float16)
    pick = np.array([rows.randrange(len(lengths)) for _ in range(rows.randrange(1, 2 * len(lengths) + 1))])
    tokens, n = gather_token_states(states, offsets, pick)
    assert n.tolist() == [lengths[i] for i in pick]
    np.testing.assert_array_equal(tokens.numpy(), np.concatenate([states[offsets[i]:offsets[i + 1]] for i in pick]))
    with torch.no_grad():
        packed = layers.forward_packed(tokens, n, chunk)
        alone = torch.cat([layers(torch.from_numpy(states[offsets[i]:offsets[i + 1]])[None],
                                  torch.ones((1, lengths[i]), dtype=torch.bool)) for i in pick])
    torch.testing.assert_close(packed, alone, rtol=0, atol=2e-6)


def test_protclip_with_a_tuned_text_tower_trains_saves_and_scores_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, char_bert: tuple[Path, Path]) -> None:
    """--text-tune 1: the text encoder's top layer trains (its weights move at their own learning rate), is
    saved with the model, and the reloaded run scores GO terms through it (the same scores as at the end of
    training; frozen features would give others)."""
    from hypalign.data.go_split import prepare_go_split
    from hypalign.data.protein import GODataset
    from hypalign.data.splits import Split
    from hypalign.encoders.text import token_states_cached
    from hypalign.models.protclip import TUNED_TERMS_FILE
    from hypalign.recipes.protclip import (
        ProtCLIPConfig,
        load_protclip_run,
        run_scores,
        term_table,
        train_protclip,
    )
    from hypalign.train import TrainConfig

    bert, cache = char_bert
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(cache))
    rng = np.random.default_rng(1)
    go = [("GO:0016301", "GO:0016310", "GO:0005737"), ("GO:0005215", "GO:0006810", "GO:0016020")]
    accs = [f"Q{i:05d}" for i in range(40)]
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 30)) for _ in accs]
    terms = {o: [[go[i % 2][k]] for i in range(40)] for k, o in enumerate(("MF", "BP", "CC"))}
    gsd = prepare_go_split(Split(accs[:24], accs[24:32], accs[32:]), data=GODataset(accs, seqs, terms))
    cfg = ProtCLIPConfig(cnn_dim=16, cnn_layers=2, hidden=32, emb_dim=8, text_path=str(bert), batch_size=8,
                         max_len=48, negative_terms=16, text_tune=1, text_lr=1e-2, transfer_k=0,
                         objectives="gc,term,entail")
    kept: dict = {}
    tc = TrainConfig(run_dir=str(tmp_path / "run"), epochs=2, lr=3e-3, progress=False, threads=1)
    out = train_protclip(cfg, tc, gsd=gsd, keep_task=kept)
    task = kept["task"]
    groups = task.param_groups(task.model, tc)
    tuned_ids = {id(p) for g in groups if g.get("lr") == 1e-2 for p in g["params"]}
    assert tuned_ids == {id(p) for p in task.model.text_layers.parameters()}
    from transformers import AutoModel

    start = AutoModel.from_pretrained(str(bert)).encoder.layer[1].state_dict()
    now = task.model.text_layers.layers[0].state_dict()
    assert max(float((now[k].cpu() - start[k]).abs().max()) for k in start) > 1e-3  # the tuned layer moved
    model, run_cfg = load_protclip_run(tmp_path / "run")
    assert hasattr(model, "text_layers") and run_cfg["protclip"]["text_tune"] == 1
    scores = run_scores(model, run_cfg, gsd)[2]["test"]
    for o in ("BP", "MF", "CC"):
        np.testing.assert_allclose(scores[o], kept["scores"]["test"][o], atol=1e-5)
    frozen = term_table(gsd.ontologies, str(bert))[2]
    tuned = term_table(gsd.ontologies, str(bert), model=model)[2]
    assert tuned.shape == frozen.shape and float((tuned - frozen).abs().max()) > 1e-3
    # the run keeps its tuned term features: scoring needs neither the layers' rerun nor the original encoder
    assert (tmp_path / "run" / "model" / TUNED_TERMS_FILE).is_file()
    assert torch.equal(term_table(gsd.ontologies, str(tmp_path / "no-encoder"), model=model)[2], tuned)
    model, _ = load_protclip_run(tmp_path / "run")  # other weights (or another term axis): computed afresh
    with torch.no_grad():
        model.text_layers.layers[0].output.dense.weight.mul_(-1.0)
    moved = term_table(gsd.ontologies, str(bert), model=model)[2]
    assert float((moved - tuned).abs().max()) > 1e-3
    np.testing.assert_allclose(moved.numpy(), model.tuned_text_features(*token_states_cached(
        [n for o in gsd.ontologies for n in gsd.ontologies[o].names], str(bert), 1)).numpy(), atol=1e-6)
    assert 0.0 <= out["test"]["BP/fmax"] <= 1.0
