"""The protein language model recipe: the two masking schedules, the weighted objective, homolog exclusion with
DIAMOND, training end to end with an exact resume, and the saved model read as ProtCLIP's ESM tower."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.data.sequences import SequenceSet, exclude_held_out
from hypalign.encoders.protein import CLS, EOS, MASK, PAD, mask_absorbing, mask_bert, tokenize

AA = "ACDEFGHIKLMNPQRSTVWY"


def test_absorbing_diffusion_and_bert_masks() -> None:
    ids, _ = tokenize(["ACDEFGHIKL" * 30, "MKTAYIAKQR" * 20], 400)
    noised, labels, weights, t = mask_absorbing(ids, 500, np.random.default_rng(0))
    special = (ids == CLS) | (ids == EOS) | (ids == PAD)
    picked = labels != -100
    assert not (picked & special).any()  # never <cls>, <eos>, padding
    assert torch.equal(noised[picked], torch.full_like(noised[picked], MASK))  # absorbing: every pick is <mask>
    assert torch.equal(noised[~picked], ids[~picked]) and torch.equal(labels[picked], ids[picked])
    for r in range(2):  # lambda(t) = (T - t + 1) / T on the picked residues, 0 elsewhere
        lam = (500 - int(t[r]) + 1) / 500
        assert torch.allclose(weights[r][picked[r]], torch.tensor(lam)) and (weights[r][~picked[r]] == 0).all()
    # t / T of the residues on average: T = 1 masks every residue (t = 1), with weight 1
    _, l2, w2, t2 = mask_absorbing(ids, 1, np.random.default_rng(1))
    assert t2.tolist() == [1, 1] and torch.equal(l2 != -100, ~special) and (w2[~special] == 1).all()
    rates = []
    for seed in range(200):
        _, lab, _, tt = mask_absorbing(ids[:1], 10, np.random.default_rng(seed))
        rates.append(((lab != -100).sum().item() / 300, tt.item() / 10))
    got, want = np.array(rates).T
    assert np.corrcoef(got, want)[0, 1] > 0.98 and abs(got.mean() - want.mean()) < 0.01
    # BERT / ESM: 15 % picked, of those 80 % <mask>, 10 % another residue, 10 % kept
    big, _ = tokenize(["".join(np.random.default_rng(2).choice(list(AA), 5000))], 5002)
    out, lab = mask_bert(big, 0.15, np.random.default_rng(3))
    pick = lab != -100
    assert abs(pick.float()[0, 1:-1].mean().item() - 0.15) < 0.015
    masked, changed = (out[pick] == MASK).float().mean().item(), ((out != big) & (out != MASK))[pick].float().mean()
    assert abs(masked - 0.8) < 0.04 and 0.06 < changed.item() < 0.11  # a random residue may equal the true one
    assert out[~pick].tolist() == big[~pick].tolist()
    assert ((out[pick] >= 4) & (out[pick] < 24) | (out[pick] == MASK)).all()


def test_sequence_store_round_trip(tmp_path: Path) -> None:
    from hypalign.data.sequences import window_ids

    ss = SequenceSet.from_strings(["a", "b", "c"], ["MKTAYIAK", "GG", "WLPQ"])
    assert ss.lengths().tolist() == [8, 2, 4] and ss.sequence(2) == "WLPQ"
    assert SequenceSet.from_strings(["j"], ["MJK"]).sequence(0) == "MXK"  # a letter ESM has no token for: <unk>
    ss.save(tmp_path / "s.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no stray temporary file
    back = SequenceSet.load(tmp_path / "s.npz")
    assert back.ids == ss.ids and np.array_equal(back.tokens, ss.tokens) and back.sequence(0) == "MKTAYIAK"
    sub = back.subset([2, 0])
    assert sub.ids == ["c", "a"] and [sub.sequence(i) for i in range(2)] == ["WLPQ", "MKTAYIAK"]
    ids = window_ids(ss, [(0, 3), (1, 0)], 6)  # 4 residues from residue 3 of "MKTAYIAK"; "GG" whole, padded
    want, _ = tokenize(["AYIA", "GG"], 6)
    assert torch.equal(ids, want)


def test_weighted_masked_lm_objective_by_hand() -> None:
    from hypalign.objectives import ObjectiveSet
    from hypalign.recipes.protlm.config import OBJECTIVES

    objective = ObjectiveSet.from_menu(OBJECTIVES, {"mlm": None})
    logits = torch.randn(2, 3, 33, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, 5, 7], [4, -100, -100]])
    weights = torch.tensor([[0.0, 0.5, 0.5], [0.25, 0.0, 0.0]])
    ce = lambda i, j: -torch.log_softmax(logits[i, j], -1)[labels[i, j]]  # noqa: E731
    want = (0.5 * ce(0, 1) + 0.5 * ce(0, 2) + 0.25 * ce(1, 0)) / 3  # normalised by the 3 masked residues
    got = objective({"mlm_logits": logits}, {"mlm_labels": labels, "mlm_weights": weights}, torch.nn.Linear(1, 1))
    assert got["loss"].item() == pytest.approx(want.item(), rel=1e-6)


def test_exclusion_removes_held_out_proteins_and_their_homologs(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    import hypalign.data.sequences as seqmod

    rng = np.random.default_rng(0)
    held = "".join(rng.choice(list(AA), 200))
    near = list(held)  # 85 % identical over its whole length
    for i in rng.choice(200, 30, replace=False):
        near[i] = AA[(AA.index(near[i]) + 7) % 20]
    others = ["".join(rng.choice(list(AA), 200)) for _ in range(6)]
    pool = SequenceSet.from_strings(["HELD", "COPY", "NEAR", *[f"O{i}" for i in range(6)]],
                                    [held, held, "".join(near), *others])
    monkeypatch.setattr(seqmod, "held_out_sequences", lambda spec: (["HELD"], [held]))
    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path))
    keep = exclude_held_out(pool, ["fake"], threads=1)
    assert [pool.ids[i] for i in keep] == [f"O{i}" for i in range(6)]  # the accession, an identical copy, a homolog
    assert len(list((tmp_path / "protlm").glob("exclude-*.json"))) == 1  # cached: a second call reads it
    import hypalign.data.seqtools as tools

    def no_search(*a: object, **k: object) -> None:
        raise AssertionError("DIAMOND ran again: the cache was not read")

    monkeypatch.setattr(tools, "diamond_blastp", no_search)
    assert exclude_held_out(pool, ["fake"]).tolist() == keep.tolist()
    assert exclude_held_out(pool, []).tolist() == list(range(9))


TINY = ["--exclude", "none", "--d", "32", "--heads", "2", "--layers", "2", "--max-len", "64", "--batch-size", "8",
        "--valid-size", "10", "--lr", "3e-3", "--warmup-steps", "5", "--no-progress"]


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 sequences, each a random 4-residue motif repeated: a masked residue is predictable from its context."""
    rng = np.random.default_rng(0)
    f = tmp_path_factory.mktemp("lm") / "seqs.fasta"
    lines = []
    for i in range(80):
        motif = "".join(rng.choice(list(AA), 4))
        lines += [f">s{i}", (motif * 40)[: int(rng.integers(30, 90))]]
    f.write_text("\n".join(lines) + "\n")
    return f


def _train(fasta: Path, out: Path, *extra: str) -> dict:
    res = CliRunner().invoke(app, ["train", "protein-lm", "--data", str(fasta), *TINY, "-o", str(out), "--json",
                                   *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_protein_lm_end_to_end_resume_and_as_protclip_tower(fasta: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import EsmTokenizer

    from hypalign.encoders.protein import ESMEncoder

    got = _train(fasta, tmp_path / "run", "--epochs", "8", "--masking", "esm")
    assert got["steps"] == 8 * (70 // 8)  # 80 sequences, 10 held back, 8 per step
    # learned: the held-back residues' perplexity well under the residue-frequency floor
    assert got["mask15_perplexity"] < 0.8 * got["unigram_perplexity"], got
    for key in ("mask15_accuracy", "mask50_accuracy", "mask50_perplexity", "diffusion_loss", "sequences_per_s"):
        assert math.isfinite(got[key]), key
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["mask15_perplexity"] == pytest.approx(got["mask15_perplexity"], rel=1e-5)
    # a run cut after 3 steps and resumed ends with the uninterrupted weights (tied LM head stored once)
    _train(fasta, tmp_path / "cut", "--epochs", "8", "--masking", "esm", "--max-steps", "3")
    _train(fasta, tmp_path / "cut", "--epochs", "8", "--masking", "esm", "--resume")
    a = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # model/ is a Hugging Face ESM directory: ESM's tokenizer reads it, ProtCLIP's tower loads it (run dir or model/)
    model_dir = tmp_path / "run" / "model"
    tok = EsmTokenizer(str(model_dir / "vocab.txt"))
    ids, _ = tokenize(["MKTAYIAK"], 16)
    assert tok("MKTAYIAK")["input_ids"] == ids[0].tolist()
    enc = ESMEncoder(model_dir)
    assert enc.width == 32
    emb = enc(ids, ids != PAD)
    assert emb.shape == (1, 32) and torch.isfinite(emb).all()
    from hypalign.recipes.protclip.config import ProtCLIPConfig

    assert ProtCLIPConfig(encoder=str(tmp_path / "run")).encoder_path == str(model_dir)
    # the default masking: DPLM's absorbing diffusion; it trains and is measured the same way
    dif = _train(fasta, tmp_path / "dif", "--epochs", "2")
    assert json.loads((tmp_path / "dif" / "config.json").read_text())["protein-lm"]["masking"] == "diffusion"
    assert math.isfinite(dif["diffusion_loss"])


def test_protein_lm_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fasta"
    bad.write_text(">a\nMKT\n>b\nMK1T\n")
    for args, msg in (([*TINY[:2], "--data", str(tmp_path / "none.fasta")], "not found"),
                      (["--data", str(bad), *TINY], "line"),
                      (["--data", str(bad), *TINY, "--heads", "3"], "multiple of --heads"),
                      (["--data", str(bad), *TINY, "--skip-invalid"], "not more than --valid-size")):
        res = CliRunner().invoke(app, ["train", "protein-lm", *args, "-o", str(tmp_path / "x")])
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output


@pytest.mark.slow
def test_held_out_chains_of_the_structure_split() -> None:
    """``structures:small`` names the small structure split's valid and test chains, with their sequences (needs
    the packaged chains: ``hypalign protein structures small``; about a minute when not yet cached)."""
    from hypalign.data.sequences import held_out_sequences
    from hypalign.data.structures import load_structures, read_split_ids, split_dir

    ids, seqs = held_out_sequences("structures:small")
    d = split_dir("small")
    assert ids == read_split_ids(d, "valid") + read_split_ids(d, "test") and len(ids) == 601
    ss = load_structures()
    row = {c: i for i, c in enumerate(ss.ids)}
    assert all(seqs[k] == ss.sequence(row[c]) for k, c in enumerate(ids))
    assert all(40 <= len(s) <= 512 for s in seqs)
