"""The structure tokenizer (spec §5.1): the losses and metrics by hand and against float64, the encoder's SE(3)
invariance, lookup-free quantisation's codes, and the recipe end to end on made-up PDB files (train, eval.json,
exact resume, tokenize with --decode, one-line errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.data.structures import read_structure_file, write_backbone_pdb
from hypalign.eval.structure import ca_rmsd, code_usage, error_by_dssp, gdt, tm_score
from hypalign.losses.structure import (
    aligned_sq_error,
    commitment,
    distance_loss,
    fape,
    kabsch_superpose,
    lfq_entropy,
    step_error,
)
from hypalign.models.structok import StructureTokenizer, backbone_frames, dihedrals
from structure_fixtures import TINY, chain


def rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.linalg.det(q))  # a proper rotation


def test_kabsch_recovers_a_rigid_motion_and_the_losses_vanish_on_it() -> None:
    x = torch.from_numpy(chain(30, 0))[None]
    moved = x @ rotation(1).T + torch.tensor([3.0, -7.0, 2.0], dtype=torch.float64)
    mask = torch.ones(1, 30, dtype=torch.bool)
    torch.testing.assert_close(kabsch_superpose(moved, x, mask), x, atol=1e-9, rtol=0)
    assert aligned_sq_error(moved, x, mask).item() == pytest.approx(0.0, abs=1e-18)
    assert distance_loss(moved[:, :, 1], x[:, :, 1], mask).item() == pytest.approx(0.0, abs=1e-5)
    assert fape(moved, x, mask).item() == pytest.approx(1e-5, abs=2e-6)  # the floor sqrt(1e-8)/10, float32
    # FAPE by hand on two residues: move residue 1 by 3 Å along the x axis of the world; residue 0's frame sees
    # residue 1's four atoms 3 Å off, residue 1's frame sees residue 0's atoms 3 Å off: 16 atom terms, 8 of 0.3
    two = x[:, :2].clone()
    shifted = two.clone()
    shifted[:, 1] += torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    assert fape(shifted, two, mask[:, :2]).item() == pytest.approx((8 * 0.3 + 8 * 1e-5) / 16, rel=1e-6)  # + floors
    far = shifted * 100
    assert fape(far, two, mask[:, :2], unclamped_fraction=0.0).item() <= 1.0  # clamped at 10 Å, in units of 10 Å
    mixed = 0.9 * fape(far, two, mask[:, :2], unclamped_fraction=0.0) + 0.1 * fape(far, two, mask[:, :2], clamp=1e9)
    assert fape(far, two, mask[:, :2]).item() == pytest.approx(mixed.item(), rel=1e-6)  # AlphaFold's 10 % unclamped
    # a reflection is not a rotation: the superposed error stays
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert aligned_sq_error(mirrored, x, mask).item() > 1.0 and fape(mirrored, x, mask).item() > 0.05
    # padding is ignored: the masked residues may hold anything
    pad = torch.cat([moved, torch.full((1, 5, 4, 3), 1e3, dtype=torch.float64)], 1)
    tgt = torch.cat([x, torch.zeros(1, 5, 4, 3, dtype=torch.float64)], 1)
    m2 = torch.cat([mask, torch.zeros(1, 5, dtype=torch.bool)], 1)
    assert aligned_sq_error(pad, tgt, m2).item() == pytest.approx(0.0, abs=1e-18)


def test_aligned_error_and_metrics_against_scipy_and_by_hand() -> None:
    from scipy.spatial.transform import Rotation

    x = chain(40, 2)
    y = x + np.random.default_rng(5).normal(0, 0.8, x.shape)
    ca_x, ca_y = x[:, 1] - x[:, 1].mean(0), y[:, 1] - y[:, 1].mean(0)
    _, rssd = Rotation.align_vectors(ca_x, ca_y)  # scipy's optimal rotation: the float64 oracle
    want = rssd / math.sqrt(40)
    assert ca_rmsd(y, x) == pytest.approx(want, rel=1e-9)
    mask = torch.ones(1, 40, dtype=torch.bool)
    ca = lambda a: torch.from_numpy(a[:, 1:2])[None]  # noqa: E731  (CA only, as one-atom residues)
    assert aligned_sq_error(ca(y), ca(x), mask).item() == pytest.approx(want**2, rel=1e-9)
    # GDT fractions and the TM-score's lower bound from the same superposition's deviations
    rot, _ = Rotation.align_vectors(ca_x, ca_y)
    dev = np.linalg.norm(rot.apply(ca_y) - ca_x, axis=1)
    g = gdt(y, x)
    assert g["gdt_1"] == pytest.approx((dev <= 1).mean()) and g["gdt_8"] == 1.0
    d0 = 1.24 * (40 - 15) ** (1 / 3) - 1.8
    tm_fixed = float(np.mean(1 / (1 + (dev / d0) ** 2)))
    assert tm_fixed - 1e-9 <= tm_score(y, x) <= tm_fixed + 0.02  # TM-score searches superpositions: never lower
    assert tm_score(x, x) == pytest.approx(1.0)
    assert code_usage(np.arange(16).repeat(3), 16) == {"codes_used": 16, "dead_codes": 0,
                                                       "perplexity": pytest.approx(16)}
    assert code_usage(np.zeros(5, int), 8)["perplexity"] == pytest.approx(1.0)
    e = error_by_dssp([np.array([1.0, 2.0, 3.0, 4.0])], ["HEGT"])
    assert (e["err_helix"], e["err_strand"], e["err_other"], e["n_helix"]) == (2.0, 2.0, 4.0, 2)
    assert error_by_dssp([np.array([1.0, 3.0])], ["CC"]) == {"err_other": 2.0, "n_other": 2}


def test_lfq_terms_by_hand() -> None:
    z = torch.tensor([[[0.0, 2.0], [-1.0, 0.5]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    p = torch.sigmoid(4 * z[0])

    def h(q: torch.Tensor) -> torch.Tensor:
        return -(q * q.log() + (1 - q) * (1 - q).log())

    # the codebook entropy over the 4 codes of 2 bits, enumerated: p(c | z_i) = Π_k p(bit_k = c_k | z_i)
    codes = [(a, b) for b in (0, 1) for a in (0, 1)]
    pc = torch.stack([torch.stack([(p[i, 0] if a else 1 - p[i, 0]) * (p[i, 1] if b else 1 - p[i, 1])
                                   for a, b in codes]) for i in range(2)]).mean(0)
    assert float(pc.sum()) == pytest.approx(1.0)
    want = h(p).sum(-1).mean() + (pc * pc.log()).sum()
    assert lfq_entropy(z, mask).item() == pytest.approx(want.item(), rel=1e-5)
    bound = h(p).sum(-1).mean() - h(p.mean(0)).sum()  # the bits' marginals: an upper bound of the codebook entropy
    assert lfq_entropy(z, mask, exact_bits=1).item() == pytest.approx(bound.item(), rel=1e-5)
    # correlated bits (both bits always equal): the marginals look even, the exact term sees two codes, not four
    zc = torch.tensor([[[3.0, 3.0], [-3.0, -3.0]]])
    assert lfq_entropy(zc, mask, exact_bits=1).item() < lfq_entropy(zc, mask).item() - 0.6  # ln 4 − ln 2 = 0.69
    assert commitment(z, mask).item() == pytest.approx((1 + 1 + 0 + 0.25) / 4)  # sign(0) = +1; element mean


def test_encoder_is_invariant_and_codes_round_trip() -> None:
    torch.manual_seed(0)
    m = StructureTokenizer(d=32, heads=2, k=8, n_mp=2, n_enc_tf=1, n_dec=1, n_bits=13).double()
    x = torch.from_numpy(chain(25, 3))[None]
    mask = torch.ones(1, 25, dtype=torch.bool)
    moved = x @ rotation(4).T + torch.tensor([10.0, 4.0, -2.0], dtype=torch.float64)
    with torch.no_grad():
        z1, z2 = m.encode(x, mask), m.encode(moved, mask)
    torch.testing.assert_close(z1, z2, atol=1e-9, rtol=0)  # float64 model: invariant to rounding
    # frames are rotations; dihedrals as sin/cos agree with a float64 hand computation of one
    rot = backbone_frames(x)
    torch.testing.assert_close(rot.transpose(-1, -2) @ rot, torch.eye(3, dtype=torch.float64).expand_as(rot))
    b0, b1, b2 = x[0, 4, 2] - x[0, 4, 1], x[0, 5, 0] - x[0, 4, 2], x[0, 5, 1] - x[0, 5, 0]  # omega_4
    n1, n2 = torch.cross(b0, b1, dim=0), torch.cross(b1, b2, dim=0)
    omega = math.atan2(float(torch.dot(torch.cross(n1, n2, dim=0), b1 / b1.norm())), float(torch.dot(n1, n2)))
    d = dihedrals(x, mask)
    assert d[0, 4, 4].item() == pytest.approx(math.sin(omega)) and d[0, 4, 5].item() == pytest.approx(math.cos(omega))
    assert d[0, 0, :2].abs().sum() == 0 and d[0, -1, 2:].abs().sum() == 0  # no phi first, no psi/omega last
    codes = torch.tensor([[0, 1, 8191, 4096, 5]])
    assert torch.equal(m.codes(m.bits(codes)), codes)
    assert m.bits(torch.tensor([5]))[0, :4].tolist() == [1.0, -1.0, 1.0, -1.0]  # bit 0 first
    zq = m.quantize(torch.tensor([[[0.3, -0.2, 0.0]]], requires_grad=True))
    assert zq.tolist() == [[[1.0, -1.0, 1.0]]]


def test_structure_module_frames_points_and_ideal_bonds() -> None:
    from hypalign.models.structok import PointAttention, StructureModule, quat_to_rot

    torch.testing.assert_close(quat_to_rot(torch.zeros(2, 3, dtype=torch.float64)),
                               torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    r = quat_to_rot(torch.randn(50, 3, dtype=torch.float64))
    torch.testing.assert_close(r.transpose(-1, -2) @ r, torch.eye(3, dtype=torch.float64).expand(50, 3, 3))
    assert torch.allclose(torch.linalg.det(r), torch.ones(50, dtype=torch.float64))
    # a quarter turn about z: (a, b, c, d) ∝ (cos 45°, 0, 0, sin 45°), i.e. (b, c, d) = (0, 0, tan 45°) with a = 1
    q = quat_to_rot(torch.tensor([[0.0, 0.0, math.tan(math.pi / 4)]], dtype=torch.float64))[0]
    torch.testing.assert_close(q @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1.0, 0], dtype=torch.float64))
    # point attention: moving every frame by one rigid motion changes nothing (float64)
    torch.manual_seed(0)
    ipa = PointAttention(16, 2).double()
    s, mask = torch.randn(2, 9, 16, dtype=torch.float64), torch.ones(2, 9, dtype=torch.bool)
    rot = torch.linalg.qr(torch.randn(2, 9, 3, 3, dtype=torch.float64))[0]
    rot = rot * torch.linalg.det(rot)[..., None, None]
    trans = torch.randn(2, 9, 3, dtype=torch.float64)
    g = rotation(3)
    torch.testing.assert_close(ipa(s, rot, trans, mask), ipa(s, g @ rot, trans @ g.T + 4.0, mask))
    # the decoded N-CA and CA-C bonds are the ideal ones whatever the frames
    sm = StructureModule(16, 2, n_iter=2).double()
    with torch.no_grad():
        sm.update.weight.normal_(0, 0.1)  # frames away from the identity
        xyz = sm(s, mask)
    assert torch.allclose((xyz[:, :, 1] - xyz[:, :, 0]).norm(dim=-1), torch.tensor(1.4559, dtype=torch.float64),
                          atol=1e-3)
    assert torch.allclose((xyz[:, :, 2] - xyz[:, :, 1]).norm(dim=-1), torch.tensor(1.5242, dtype=torch.float64),
                          atol=1e-6)


def test_chained_steps_rebuild_a_chain_and_the_step_error_by_hand() -> None:
    from hypalign.models.structok import IDEAL_C, IDEAL_N, chain_frames, quat_to_rot, relative_steps

    x = torch.from_numpy(chain(37, 5))[None]  # 37: not a power of two (the prefix product's last round is partial)
    rel_rot, rel_t = relative_steps(x)
    rot, t = chain_frames(rel_rot, rel_t)
    r = backbone_frames(x)[0]
    # the chained frames are the true ones seen from the first residue's frame: R_0ᵀ R_i and R_0ᵀ (CA_i − CA_0)
    torch.testing.assert_close(rot[0], r[0].T @ r)
    torch.testing.assert_close(t[0], (x[0, :, 1] - x[0, 0, 1]) @ r[0])
    assert ca_rmsd(t[0].numpy(), x[0, :, 1].numpy()) < 1e-9
    # against the composition written as a loop over the chain, on random steps
    g = torch.Generator().manual_seed(1)
    rr = quat_to_rot(torch.randn(2, 11, 3, generator=g, dtype=torch.float64))
    tt = torch.randn(2, 11, 3, generator=g, dtype=torch.float64)
    rot, t = chain_frames(rr, tt)
    cur_r, cur_t = torch.eye(3, dtype=torch.float64).expand(2, 3, 3), torch.zeros(2, 3, dtype=torch.float64)
    for i in range(1, 11):
        cur_t = (cur_r @ tt[:, i, :, None])[..., 0] + cur_t
        cur_r = cur_r @ rr[:, i]
        torch.testing.assert_close(rot[:, i], cur_r)
        torch.testing.assert_close(t[:, i], cur_t)
    # step error: a chain of ideal residues (N, CA, C where the decoder puts them) — its own steps are exact (0 Å);
    # every translation 0.3 Å off along e3 puts every atom 0.3 Å off
    ideal = torch.tensor([IDEAL_N, (0.0, 0.0, 0.0), IDEAL_C], dtype=torch.float64)
    xi = torch.cat([torch.einsum("lxy,ay->lax", r, ideal) + x[0, :, 1:2], x[0, :, 3:]], 1)[None]
    steps = torch.cat([v.flatten(-2) if v.dim() == 4 else v for v in relative_steps(xi)], -1)
    mask = torch.ones(1, 37, dtype=torch.bool)
    assert step_error(steps, xi, mask).item() == pytest.approx(0.0, abs=1e-3)
    off = steps.clone()
    off[..., 11] += 0.3
    assert step_error(off, xi, mask).item() == pytest.approx(0.3, abs=1e-3)
    mask[0, 20:] = False  # the pairs past the mask do not count, however wrong
    off[0, 25:, 9] += 50.0
    assert step_error(off, xi, mask).item() == pytest.approx(0.3, abs=1e-3)



@pytest.fixture(scope="module")
def pdbs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pdbs")
    for i in range(6):
        n = 20 + 3 * i
        write_backbone_pdb(root / "train" / f"c{i}.pdb", chain(n, 10 + i), ("ACDEFGHIKLMNPQRSTVWY" * 3)[:n])
    for i in range(3):
        write_backbone_pdb(root / "test" / f"t{i}.pdb", chain(18, 30 + i), "MKTAYIAKQRQISFVKSH")
    return root


def _train(pdbs: Path, out: Path, *extra: str) -> dict:
    res = CliRunner().invoke(app, ["train", "structure-tokenizer", "--data", str(pdbs / "train"), "--test-data",
                                   str(pdbs / "test"), *TINY, "--epochs", "2", "-o", str(out), "--no-progress",
                                   "--json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads((out / "eval.json").read_text())


def test_recipe_end_to_end_resume_tokenize_decode(pdbs: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    got = _train(pdbs, tmp_path / "run")
    assert got["steps"] == 6 and got["n_chains"] == 3  # 6 chains // 2 per step, 2 epochs
    assert "err_helix" not in got and got["n_other"] == 54  # PDB files carry no DSSP: every residue "other"
    for key in ("rmsd_q_median", "rmsd_c_median", "tm_q_median", "gdt_ts_q", "quantisation_gap_rmsd", "err_other",
                "perplexity", "codes_used", "dead_codes", "tokenize_chains_per_s", "chains_per_s"):
        assert key in got and math.isfinite(got[key]), key
    assert got["codes_used"] + got["dead_codes"] == 16  # 4 bits
    assert got["tokenize_chains_per_s"] > got["chains_per_s"]  # encoding alone is part of encode + decode
    assert got["quantisation_gap_rmsd"] == pytest.approx(got["rmsd_q_median"] - got["rmsd_c_median"])
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["rmsd_q_median"] == pytest.approx(got["rmsd_q_median"], rel=1e-6)
    # resume: a run cut after 2 steps and resumed ends with the uninterrupted weights
    CliRunner().invoke(app, ["train", "structure-tokenizer", "--data", str(pdbs / "train"), "--test-data",
                             str(pdbs / "test"), *TINY, "--epochs", "2", "--max-steps", "2", "-o",
                             str(tmp_path / "cut"), "--no-progress"])
    _train(pdbs, tmp_path / "cut", "--resume")
    a = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # tokenize: JSON lines, tokens = the bits read as binary (bit 0 first); --decode writes readable PDB files
    f = pdbs / "test" / "t0.pdb"
    res = CliRunner().invoke(app, ["tokenize", str(tmp_path / "run"), "--pdb", str(f), "--decode",
                                   str(tmp_path / "dec"), "-o", str(tmp_path / "tok.jsonl")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "tok.jsonl").read_text().splitlines()[0])
    assert rec["id"] == "T0_A" and rec["sequence"] == "MKTAYIAKQRQISFVKSH" and len(rec["tokens"]) == 18
    assert all(t == int(bits[::-1], 2) for t, bits in zip(rec["tokens"], rec["bits"], strict=True))
    ss, _ = read_structure_file(tmp_path / "dec" / "T0_A.pdb", max_gap=1e9)  # a barely trained decoder: gaps
    assert ss.sequence(0) == "MKTAYIAKQRQISFVKSH" and ss.backbone(0).shape == (18, 4, 3)
    for args, msg in ((["tokenize", str(tmp_path / "run")], "give PDB / mmCIF files"),
                      (["tokenize", str(tmp_path / "run"), str(tmp_path / "nope.pdb")], "nope.pdb: not found"),
                      (["train", "structure-tokenizer", "--data", str(tmp_path / "none"), "-o", str(tmp_path / "x")],
                       "not a directory"),
                      (["train", "structure-tokenizer", "--data", str(pdbs / "train"), "--objectives", "entropy",
                        "-o", str(tmp_path / "x")], "need reconstruction or continuous")):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_the_3di_anchor_trains_the_same_decoder_on_foldseeks_tokens(pdbs: Path, tmp_path: Path) -> None:
    from hypalign.models.structok import tokens_3di, virtual_cb

    # an independent construction as the oracle: ProMod3's C-beta (spec: promod3-structdb.md §6) —
    # a = unit(CA - N), b = unit(CA - C), n = unit(a x b), d = unit(a + b), CB = CA + 0.88168 d + 1.2135 n —
    # on an ideal residue (N-CA 1.458 Å, CA-C 1.525 Å, N-CA-C 111°): the two agree to 0.06 Å, same side of the plane
    ang = np.deg2rad(111.0)
    res = np.array([[[1.458, 0, 0], [0, 0, 0], [1.525 * np.cos(ang), 1.525 * np.sin(ang), 0], [0, 0, 0]]])
    n_at, ca, c_at = res[:, 0], res[:, 1], res[:, 2]
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    a, b = unit(ca - n_at), unit(ca - c_at)
    promod3 = ca + 0.88168 * unit(a + b) + 1.2135 * unit(np.cross(a, b))
    cb = virtual_cb(res)
    assert np.linalg.norm(cb - promod3) < 0.06 and np.sign(cb[0, 2]) == np.sign(promod3[0, 2])
    assert np.linalg.norm(cb - ca) == pytest.approx(1.53, abs=0.005)  # the C-beta bond both aim at
    x = chain(30, 7)
    t = tokens_3di(x)
    assert t.shape == (30,) and t.dtype == np.int64 and 0 <= t.min() and t.max() < 20
    got = _train(pdbs, tmp_path / "tdi", "--alphabet", "3di")
    assert "rmsd_q_median" in got and "rmsd_c_median" not in got and "quantisation_gap_rmsd" not in got
    assert got["codes_used"] + got["dead_codes"] == 20
    res = CliRunner().invoke(app, ["tokenize", str(tmp_path / "tdi"), str(pdbs / "test" / "t0.pdb")])
    assert res.exit_code == 2 and "a 3di run" in res.output
    res = CliRunner().invoke(app, ["train", "structure-tokenizer", "--data", str(pdbs / "train"), "--alphabet", "3di",
                                   "--objectives", "reconstruction,entropy", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "only reconstruction applies" in res.output
