"""DPLM-2 (spec §5.1–5.2): the forward process of the task mixture, the bit loss by hand, the model's modality
blocking and shared positions, mask-predict's schedule, the template baseline and the metrics by hand, and the recipe
end to end on made-up PDB files (train, exact resume, eval, fold, design, generate, --init, one-line errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.data.structures import write_backbone_pdb
from hypalign.encoders.protein import CLS, EOS, MASK, PAD
from hypalign.eval.structure import sequence_recovery, template_model, token_accuracy
from hypalign.models.dplm2 import (
    DPLM2,
    STRUCT_BOS,
    STRUCT_EOS,
    STRUCT_MASK,
    STRUCT_OFFSET,
    STRUCT_PAD,
    bits_code,
    code_bits,
    mask_pair,
)
from hypalign.recipes.dplm2.sampling import SampleOptions, _remask, mask_predict
from structure_fixtures import TINY as TOK_TINY
from structure_fixtures import chain


def tiny_model(head: str = "bit", n_bits: int = 4, seed: int = 0) -> DPLM2:
    from hypalign.recipes.dplm2.config import DPLM2Config

    torch.manual_seed(seed)
    return DPLM2(DPLM2Config(d=16, heads=2, layers=1, max_residues=30, crop=16).esm_config(), n_bits=n_bits,
                 struct_head=head).eval()


def pair(lengths: list[int], n_bits: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    p = max(lengths) + 2
    s = torch.full((len(lengths), p), STRUCT_PAD)
    a = torch.full((len(lengths), p), PAD)
    for r, n in enumerate(lengths):
        s[r, 0], s[r, n + 1] = STRUCT_BOS, STRUCT_EOS
        s[r, 1 : n + 1] = torch.randint(0, 2**n_bits, (n,), generator=g) + STRUCT_OFFSET
        a[r, 0], a[r, n + 1] = CLS, EOS
        a[r, 1 : n + 1] = torch.randint(4, 24, (n,), generator=g)
    return s, a


@given(st.lists(st.integers(0, 2**13 - 1), min_size=1, max_size=20))
@settings(max_examples=50, deadline=None)
def test_bits_and_codes_round_trip(codes: list[int]) -> None:
    c = torch.tensor(codes)
    b = code_bits(c)
    assert b.shape == (len(codes), 13) and set(b.unique().tolist()) <= {0, 1}
    assert torch.equal(bits_code(b), c)
    assert all(int("".join(map(str, row[::-1])), 2) == v for row, v in zip(b.tolist(), codes, strict=True))


def test_the_task_mixture_at_full_noise() -> None:
    """With T = 1 every t is 1: a half that is noised is wholly masked with weight λ = 1, and the task decides which
    half — single and joint both, folding only the structure, inverse folding only the sequence."""
    s, a = pair([5, 7, 3, 6] * 25)
    out = mask_pair(s, a, 1, np.random.default_rng(0))
    struct_res, aa_res = s >= STRUCT_OFFSET, (a >= 4) & (a != MASK)
    seen = set()
    for r, task in enumerate(out["task"].tolist()):
        seen.add(task)
        s_noised, a_noised = task != 2, task != 1
        assert torch.equal(out["struct_in"][r] == STRUCT_MASK, struct_res[r] & s_noised)
        assert torch.equal(out["aa_in"][r] == MASK, aa_res[r] & a_noised)
        assert torch.equal(out["struct_labels"][r], torch.where(struct_res[r] & s_noised, s[r] - STRUCT_OFFSET,
                                                                torch.tensor(-100)))
        assert torch.equal(out["aa_labels"][r], torch.where(aa_res[r] & a_noised, a[r], torch.tensor(-100)))
        assert torch.equal(out["struct_weights"][r], (struct_res[r] & s_noised).float())
        assert bool(out["attention_block"][r]) == (task == 0)
        # specials are never masked
        assert out["struct_in"][r, 0] == STRUCT_BOS and out["aa_in"][r, 0] == CLS
    assert seen == {0, 1, 2, 3}


def test_noise_level_weights_and_joint_shares_t() -> None:
    """At T = 500 a masked token's weight is λ(t) = (T − t + 1)/T, one value per half; in the joint task both halves
    share t (equal weights), and the masked share follows t/T."""
    s, a = pair([200] * 60)
    out = mask_pair(s, a, 500, np.random.default_rng(1), mix=(0, 0, 0, 1))
    checked = 0
    for r in range(60):
        ws = out["struct_weights"][r][out["struct_labels"][r] != -100].unique()
        wa = out["aa_weights"][r][out["aa_labels"][r] != -100].unique()
        if len(ws) and len(wa):
            assert len(ws) == 1 and torch.equal(ws, wa)
            t = 500 - float(ws[0]) * 500 + 1  # λ = (T − t + 1)/T
            share = float((out["struct_labels"][r] != -100).float().sum()) / 200
            assert abs(share - t / 500) < 0.15
            checked += 1
    assert checked >= 55  # only a protein drawn at a t too small to mask anything is left out


def test_masked_bits_by_hand() -> None:
    from hypalign.objectives.library import MaskedBits

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([[5, -100, 15], [-100, 0, -100]])
    weights = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.25, 0.0]])
    got = MaskedBits(1.0, logits="l", labels="y", weights="w").compute({"l": logits}, {"y": labels, "w": weights},
                                                                         torch.nn.Identity())
    total = 0.0
    for (b, i), w in (((0, 0), 0.5), ((0, 2), 1.0), ((1, 1), 0.25)):
        code = int(labels[b, i])
        bce = [math.log1p(math.exp(-x)) if (code >> k) & 1 else math.log1p(math.exp(x))
               for k, x in enumerate(logits[b, i].tolist())]
        total += w * sum(bce) / 4
    assert float(got) == pytest.approx(total / 3, rel=1e-6)


@pytest.mark.parametrize("head", ["bit", "index"])
def test_blocking_shared_positions_and_output_shapes(head: str) -> None:
    model = tiny_model(head)
    s, a = pair([6, 9])
    out = model(s, a)
    assert out["struct_logits"].shape == (2, 11, 4 if head == "bit" else 16)
    assert out["aa_logits"].shape == (2, 11, 33)
    # with attention blocked, the structure half does not see the sequence (and back); without, it does
    a2 = a.clone()
    a2[:, 1:4] = torch.tensor([5, 6, 7])
    blocked = torch.tensor([True, True])
    x, y = model(s, a, blocked), model(s, a2, blocked)
    assert torch.allclose(x["struct_logits"], y["struct_logits"], atol=1e-6)
    assert not torch.allclose(model(s, a)["struct_logits"], model(s, a2)["struct_logits"], atol=1e-4)
    # padding changes nothing: protein 0 alone equals protein 0 in a batch padded to protein 1's length
    alone = model(s[:1, :8], a[:1, :8])
    assert torch.allclose(alone["aa_logits"][0], out["aa_logits"][0, :8], atol=1e-5)
    # shared positions: the structure and sequence token of residue i carry the same rotary position, so swapping
    # the halves' contents (a model whose two embeddings coincide) is a symmetry — checked through the position ids
    # given to the trunk
    seen = {}
    handle = model.lm.esm.register_forward_pre_hook(lambda m, args, kw: seen.update(kw), with_kwargs=True)
    model(s, a)
    handle.remove()
    pos = seen["position_ids"][0]
    assert torch.equal(pos[:11], torch.arange(11)) and torch.equal(pos[11:], torch.arange(11))


def test_remask_keeps_the_least_confident_and_mask_predict_fills_everything() -> None:
    scores = torch.tensor([[0.1, -3.0, -1.0, -2.0, 0.0]])
    todo = torch.tensor([[False, True, True, True, True]])
    assert _remask(scores, todo, torch.tensor([2])).tolist() == [[False, True, False, True, False]]
    model = tiny_model("index")
    s, a = pair([7, 4])
    s_in = torch.where(s >= STRUCT_OFFSET, torch.tensor(STRUCT_MASK), s)
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(1))
    s_out, a_out = mask_predict(model, s_in, a, SampleOptions(steps=3))
    handle.remove()
    assert len(calls) == 3
    assert torch.equal(a_out, a)  # the given half is untouched
    assert torch.equal(s_out < STRUCT_OFFSET, s < STRUCT_OFFSET) and int((s_out == STRUCT_MASK).sum()) == 0
    # greedy with one step is the argmax of one forward pass
    one, _ = mask_predict(model, s_in, a, SampleOptions(steps=1))
    arg = model(s_in, a)["struct_logits"].argmax(-1) + STRUCT_OFFSET
    assert torch.equal(one[s >= STRUCT_OFFSET], arg[s >= STRUCT_OFFSET])


def test_token_accuracy_recovery_and_the_template_model_by_hand() -> None:
    got = token_accuracy([np.array([3, 0]), np.array([8])], [np.array([3, 1]), np.array([0])], n_bits=4)
    assert got == {"index_accuracy": pytest.approx(1 / 3), "bit_accuracy": pytest.approx((4 + 3 + 3) / 12)}
    assert sequence_recovery("MKVA", "MKLA") == 0.75
    x = np.arange(7 * 3, dtype=float).reshape(7, 1, 3)
    same, cov = template_model("MKVLGIT", "MKVLGIT", x)
    assert cov == 1.0 and np.array_equal(same, x)
    # two query residues without a template residue: on the line between their aligned neighbours
    ins, cov = template_model("MKVLAAGIT", "MKVLGIT", x)
    assert cov == pytest.approx(7 / 9)
    assert np.allclose(ins[[0, 1, 2, 3, 6, 7, 8]], x) and np.allclose(ins[4], x[3] + (x[4] - x[3]) / 3)


TINY = ["--d", "16", "--heads", "2", "--layers", "1", "--crop", "16", "--batch-size", "2", "--min-length", "8",
        "--max-residues", "40", "--eval-chains", "2", "--eval-steps", "2"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dplm2")
    for i in range(6):
        n = 20 + 3 * i
        write_backbone_pdb(root / "train" / f"c{i}.pdb", chain(n, 10 + i), ("ACDEFGHIKLMNPQRSTVWY" * 3)[:n])
    for i in range(2):
        write_backbone_pdb(root / "test" / f"t{i}.pdb", chain(18, 30 + i), "MKTAYIAKQRQISFVKSH")
    res = CliRunner().invoke(app, ["train", "structure-tokenizer", "--data", str(root / "train"), *TOK_TINY,
                                   "--epochs", "1", "-o", str(root / "tok"), "--no-progress"])
    assert res.exit_code == 0, res.output
    return root


def _train(root: Path, out: Path, *extra: str) -> dict:
    res = CliRunner().invoke(app, ["train", "dplm2", "--tokenizer", str(root / "tok"), "--data", str(root / "train"),
                                   "--test-data", str(root / "test"), *TINY, "--epochs", "2", "-o", str(out),
                                   "--no-progress", *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "eval.json").read_text())


@pytest.mark.parametrize("head", ["bit", "index"])
def test_recipe_end_to_end_resume_fold_design_generate(setup: Path, tmp_path: Path, head: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from hypalign.data.structures import read_structure_file
    from hypalign.recipes.dplm2.tokens import load_tokenizer, structure_codes
    from hypalign.recipes.structok.task import read_structure_dir

    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path / "cache"))
    got = _train(setup, tmp_path / "run", "--struct-head", head)
    # the training chains' tokens are cached, and are the tokenizer's codes
    cached = list((tmp_path / "cache" / "structures").glob("tokens-*.npz"))
    assert len(cached) == 1
    ss = read_structure_dir(setup / "train", lambda m: None)
    want = structure_codes(load_tokenizer(setup / "tok"), ss)
    with np.load(cached[0]) as z:
        assert np.array_equal(z["codes"], np.concatenate(want)) and z["offsets"][-1] == ss.lengths().sum()
        # the continuous codes beside them (float16): their signs are the codes' bits
        bits = (z["feats"].astype(np.float32) >= 0).astype(np.int64)
        assert np.array_equal((bits * 2 ** np.arange(4)).sum(1), z["codes"])
    assert got["steps"] == 6 and got["n_chains"] == 2
    for key in ("index_accuracy", "bit_accuracy", "fold_rmsd_median", "fold_tm_median", "tokenizer_rmsd_median",
                "aar_median", "fold_chains_per_s"):
        assert math.isfinite(got[key]), key
    assert (tmp_path / "run" / "tokenizer" / "model.safetensors").is_file()  # the run stands alone
    chains = json.loads((tmp_path / "run" / "eval-chains.json").read_text())  # the same figures chain by chain
    assert chains["chains"] == ["T0_A", "T1_A"] and "fold_rmsd" not in got
    for key in ("fold_rmsd", "fold_tm", "tokenizer_tm", "aar"):
        assert got[f"{key}_median"] == pytest.approx(float(np.median(chains[key])), rel=1e-9), key
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    for key in ("index_accuracy", "bit_accuracy", "fold_rmsd_median", "aar_mean"):
        assert again[key] == pytest.approx(got[key], rel=1e-5), key
    # a run cut after 2 steps and resumed ends with the uninterrupted weights
    CliRunner().invoke(app, ["train", "dplm2", "--tokenizer", str(setup / "tok"), "--data", str(setup / "train"),
                             *TINY, "--struct-head", head, "--epochs", "2", "--max-steps", "2", "-o",
                             str(tmp_path / "cut"), "--no-progress"])
    _train(setup, tmp_path / "cut", "--struct-head", head, "--resume")
    assert list((tmp_path / "cache" / "structures").glob("tokens-*.npz")) == cached  # read again, not redone
    a = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # fold: one PDB per sequence with its sequence and length, tokens in tokens.jsonl
    fasta = tmp_path / "q.fasta"
    fasta.write_text(">p1 first\nMKTAYIAKQR\n>p2\nGSHMLEDPVA\nGSW\n>sp|x\nMKV\n>sp_x\nMKVL\n")
    res = CliRunner().invoke(app, ["fold", str(tmp_path / "run"), "--fasta", str(fasta), "-o", str(tmp_path / "f"),
                                   "--steps", "3"])
    assert res.exit_code == 0, res.output
    ss, _ = read_structure_file(tmp_path / "f" / "p2.pdb", max_gap=1e9)
    assert ss.sequence(0) == "GSHMLEDPVAGSW" and ss.backbone(0).shape == (13, 4, 3)
    toks = [json.loads(x) for x in (tmp_path / "f" / "tokens.jsonl").read_text().splitlines()]
    assert [t["id"] for t in toks] == ["p1", "p2", "sp|x", "sp_x"] and len(toks[1]["tokens"]) == 13
    assert [t["file"] for t in toks[2:]] == ["sp_x.pdb", "sp_x.2.pdb"]  # ids alike as file names: none overwritten
    assert read_structure_file(tmp_path / "f" / "sp_x.2.pdb", max_gap=1e9)[0].sequence(0) == "MKVL"
    # design: a FASTA record per chain, standard amino acids only, its recovery in the header
    res = CliRunner().invoke(app, ["design", str(tmp_path / "run"), "--pdb", str(setup / "test" / "t0.pdb"),
                                   "--steps", "2", "-o", str(tmp_path / "d.fasta")])
    assert res.exit_code == 0, res.output
    head_line, seq = (tmp_path / "d.fasta").read_text().splitlines()[:2]
    assert head_line.startswith(">T0_A") and "recovery=" in head_line
    assert len(seq) == 18 and set(seq) <= set("ACDEFGHIKLMNPQRSTVWY")
    # generate: N PDB files of the asked length and their sequences
    res = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--length", "12", "--n", "2", "--steps", "4",
                                   "-o", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    recs = (tmp_path / "g" / "generated.fasta").read_text().split(">")[1:]
    assert len(recs) == 2 and all(len(r.split("\n", 1)[1].replace("\n", "")) == 12 for r in recs)
    assert (tmp_path / "g" / "gen_1.pdb").is_file()


def test_repa_by_hand_and_in_training(setup: Path, tmp_path: Path) -> None:
    from hypalign.objectives.library import RepaCosine

    pred = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    target = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [0.0, 3.0]]])
    mask = torch.tensor([[True, True, False]])
    got = RepaCosine().compute({"repa": pred}, {"struct_feats": target, "feat_mask": mask}, torch.nn.Identity())
    assert float(got) == pytest.approx(-(1.0 + math.sqrt(0.5)) / 2, rel=1e-6)
    model = DPLM2(tiny_model().lm.config.to_dict(), n_bits=4, repa_dim=4).eval()
    s, a = pair([6, 9])
    out = model(s, a)
    assert out["repa"].shape == (2, 11, 4)
    # the layer mix starts even: with equal logits the mix is the mean of the embedding's and the layer's output
    layers = model.hidden(s, a, all_layers=True)
    mean = (layers[0] + layers[1])[:, 11:] / 2
    assert torch.allclose(out["repa"], model.repa_proj(mean), atol=1e-6)
    run = tmp_path / "repa"
    _train(setup, run, "--objectives", "sequence,structure,repa:0.5", "--log-every", "1")
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    terms = [r["repa"] for r in logged if "repa" in r]
    assert len(terms) == 6 and all(-1.0 <= t <= 1.0 and t != 0.0 for t in terms)  # -cos, logged every step
    res = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert res.exit_code == 0, res.output


def test_resdiff_schedule_sampler_and_loss() -> None:
    from hypalign.models.dplm2 import ResDiff
    from hypalign.objectives.library import ResidualDiffusion

    rd = ResDiff(16, 4, hidden=16, steps=50)
    betas = np.linspace(1e-4, 0.02, 50)
    assert torch.allclose(rd.alpha_bar, torch.from_numpy(np.cumprod(1 - betas)).float())
    # the sampler with the exact ε of a point mass at c (every residual = c) returns c
    c = torch.tensor([0.3, -0.2, 0.1, -0.4])

    class Oracle(ResDiff):
        def forward(self, r_t: torch.Tensor, t: torch.Tensor, zq: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            ab = self.alpha_bar[t].unsqueeze(-1)
            return (r_t - ab.sqrt() * c) / (1 - ab).sqrt()

    oracle = Oracle(16, 4, hidden=16, steps=50)
    got = oracle.sample(torch.ones(7, 4), torch.zeros(7, 16), torch.Generator().manual_seed(0))
    assert torch.allclose(got, c.expand(7, 4), atol=1e-4)
    # the objective: residual of the continuous codes, noised with the batch's draw, by hand
    model = DPLM2(tiny_model().lm.config.to_dict(), n_bits=4, resdiff_hidden=16)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 5, 4, generator=g)
    t = torch.randint(0, 100, (2, 5), generator=g)
    eps = torch.randn(2, 5, 4, generator=g)
    cond = torch.randn(2, 5, 16, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    loss = ResidualDiffusion().compute({"resdiff_cond": cond}, {"struct_feats": z, "resdiff_t": t, "resdiff_eps": eps,
                                                                "feat_mask": mask}, model)
    zq = torch.where(z >= 0, 1.0, -1.0)
    ab = model.resdiff.alpha_bar[t].unsqueeze(-1)
    pred = model.resdiff(ab.sqrt() * (z - zq) + (1 - ab).sqrt() * eps, t, zq, cond)
    want = ((pred - eps) ** 2).mean(-1)[mask].mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_resdiff_trains_and_folds_through_the_continuous_path(setup: Path, tmp_path: Path) -> None:
    run = tmp_path / "rd"
    got = _train(setup, run, "--objectives", "sequence,structure,resdiff", "--resdiff-hidden", "16")
    for key in ("fold_resdiff_rmsd_median", "fold_resdiff_tm_median", "tokenizer_continuous_rmsd_median"):
        assert math.isfinite(got[key]), key
    fasta = tmp_path / "q.fasta"
    fasta.write_text(">p1\nMKTAYIAKQR\n")
    res = CliRunner().invoke(app, ["fold", str(run), "--fasta", str(fasta), "-o", str(tmp_path / "f"), "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f" / "p1.pdb").is_file()


def test_one_line_errors_and_skip_invalid(setup: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(setup, run, "--epochs", "1")
    bad = tmp_path / "bad.fasta"
    bad.write_text(">ok\nMKTAYIAKQR\n>bad\nMKT1YIAK\n")
    long = tmp_path / "long.fasta"
    long.write_text(">ok\nMKTAYIAKQR\n>long\n" + "A" * 41 + "\n")
    ca_only = tmp_path / "ca.pdb"  # CA atoms only: no residue with a complete backbone
    ca_only.write_text("".join(line for line in (setup / "test" / "t0.pdb").read_text().splitlines(keepends=True)
                               if not line.startswith("ATOM") or line[12:16].strip() == "CA"))
    for args, msg in ((["fold", str(run), "--fasta", str(bad), "-o", str(tmp_path / "o")], "bad.fasta"),
                      (["design", str(run), "--pdb", str(ca_only)], "ca.pdb"),
                      (["fold", str(run), "--fasta", str(long), "-o", str(tmp_path / "o")], "long: 41 residues"),
                      (["design", str(run), "--pdb", str(tmp_path / "none.pdb")], "none.pdb: not found"),
                      (["generate", str(run), "--length", "41", "-o", str(tmp_path / "o")], "--length 41"),
                      (["train", "dplm2", "--tokenizer", str(tmp_path / "nope"), "-o", str(tmp_path / "x")],
                       "not a run directory"),
                      (["train", "dplm2", "--tokenizer", str(setup / "tok"), "--init", str(tmp_path), "-o",
                        str(tmp_path / "x")], "expected a protein-lm run"),
                      (["train", "dplm2", "--tokenizer", str(setup / "tok"), "--task-mix", "1,0", "-o",
                        str(tmp_path / "x")], "--task-mix")):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["fold", str(run), "--fasta", str(long), "-o", str(tmp_path / "o"), "--steps", "2",
                                   "--skip-invalid", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"folded": 1, "skipped": 1, "out": str(tmp_path / "o")}
    res = CliRunner().invoke(app, ["design", str(run), "--pdb", str(ca_only), "--pdb", str(setup / "test" / "t1.pdb"),
                                   "--steps", "2", "--skip-invalid"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count(">") == 1 and res.stdout.startswith(">T1_A")


def test_init_from_a_protein_lm_run_copies_the_trunk(setup: Path, tmp_path: Path) -> None:
    fasta = tmp_path / "seqs.fasta"
    rng = np.random.default_rng(0)
    fasta.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACDEFGHIKLMNPQRSTVWY'), 30))}\n" for i in range(12)))
    res = CliRunner().invoke(app, ["train", "protein-lm", "--data", str(fasta), "--exclude", "none", "--d", "16",
                                   "--heads", "2", "--layers", "1", "--max-len", "32", "--batch-size", "4",
                                   "--valid-size", "2", "--max-steps", "2", "-o", str(tmp_path / "lm"),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    from hypalign.recipes.dplm2.config import DPLM2Config
    from hypalign.recipes.dplm2.task import build_model

    model = build_model(DPLM2Config(tokenizer=str(setup / "tok"), init=str(tmp_path / "lm"), d=64, heads=4,
                                    layers=3, max_residues=40, crop=16), n_bits=4)
    from transformers import EsmForMaskedLM

    lm = EsmForMaskedLM.from_pretrained(str(tmp_path / "lm" / "model")).state_dict()
    mine = model.lm.state_dict()
    assert model.hidden_size == 16 and len(model.lm.esm.encoder.layer) == 1  # the init's shape wins
    compared = [k for k in lm if "position_ids" not in k]
    assert len(compared) > 15
    for k in compared:
        assert torch.equal(mine[k], lm[k]), k


def test_the_sequence_half_as_a_plain_esm_model_and_protclip_tower(setup: Path, tmp_path: Path) -> None:
    """``DPLM2.sequence_model``: the amino-acid modality embedding folded into the table gives, on the sequence
    alone, the states of the sequence half in the single-modality task (attention blocked), and the LM head's logits;
    ``hypalign train protclip --encoder DPLM2_RUN`` reads it (written once, again when the weights change)."""
    from hypalign.encoders.protein import ESMEncoder
    from hypalign.recipes.dplm2 import sequence_encoder
    from hypalign.recipes.protclip.config import ProtCLIPConfig

    model = tiny_model("bit")
    with torch.no_grad():  # a modality embedding far from its init, so that leaving it out could not pass
        model.type_emb.weight.normal_(0, 1.0)
    s, a = pair([6, 9])
    full = model(s, a, torch.tensor([True, True]))
    seq = model.sequence_model()
    out = seq(input_ids=a, attention_mask=(a != PAD).long())
    valid = a != PAD
    assert torch.allclose(out.logits[valid], full["aa_logits"][valid], atol=1e-5)
    h = seq.esm(input_ids=a, attention_mask=(a != PAD).long()).last_hidden_state
    assert torch.allclose(h[valid], full["hidden"][:, a.shape[1]:][valid], atol=1e-5)
    assert not torch.allclose(model.lm.esm(input_ids=a, attention_mask=(a != PAD).long()).last_hidden_state[valid],
                              h[valid], atol=1e-2)  # without the fold the states differ
    assert torch.equal(model.lm.esm.embeddings.word_embeddings.weight,
                       model.lm.lm_head.decoder.weight)  # the model itself is unchanged (still tied)
    # a trained run: RUN/sequence-encoder/ is a Hugging Face ESM directory; ProtCLIP's tower loads it
    _train(setup, tmp_path / "run", "--epochs", "1")
    cfg = ProtCLIPConfig(encoder=str(tmp_path / "run"), encoder_freeze=-1)
    out_dir = tmp_path / "run" / "sequence-encoder"
    assert cfg.encoder == "esm" and cfg.encoder_path == str(out_dir)
    from hypalign.recipes.dplm2 import load_run_model

    trained = load_run_model(tmp_path / "run")
    enc = ESMEncoder(out_dir)
    s1, a1 = pair([7])
    want = trained(s1, a1, torch.tensor([True]))["hidden"][0, a1.shape[1] + 1 : a1.shape[1] + 8].mean(0)
    assert torch.allclose(enc(a1, a1 != PAD)[0], want, atol=1e-5)  # the mean over the residues' states
    stamp = (out_dir / "source.json").stat().st_mtime_ns
    assert sequence_encoder(tmp_path / "run") == out_dir and (out_dir / "source.json").stat().st_mtime_ns == stamp
    _train(setup, tmp_path / "run2", "--epochs", "2")  # other weights in the run: written again
    import shutil

    shutil.copy(tmp_path / "run2" / "model" / "model.safetensors", tmp_path / "run" / "model" / "model.safetensors")
    sequence_encoder(tmp_path / "run")
    assert not torch.allclose(ESMEncoder(out_dir)(a1, a1 != PAD), enc(a1, a1 != PAD), atol=1e-6)
