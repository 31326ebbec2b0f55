"""GO function prediction: metrics (Fmax counts, filtered ranks), baselines (frequency, DIAMOND transfer,
blend), splits (files, errors, the hard split's identity guarantee on made-up protein families)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from hypalign.data.protein import GODataset, describe_protein, user_go_dataset
from hypalign.data.seqtools import Hits, diamond_blastp, mmseqs_cluster
from hypalign.data.splits import hard_split, random_split, read_split, write_split
from hypalign.errors import InputError
from hypalign.eval import baselines as bl
from hypalign.eval.function import (
    CAFA_THRESHOLDS,
    FmaxByProtein,
    _threshold_counts,
    filtered_term_ranks,
    fmax,
    go_prediction_metrics,
)

AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


# ---- metrics ------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(0, 10_000))
def test_threshold_counts_equal_one_pass_per_threshold(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = rng.choice(np.r_[CAFA_THRESHOLDS[::7], rng.random(5), 0.0], size=(n, m))  # exact threshold values too
    y = rng.random((n, m)) < 0.4
    n_pred, tp = _threshold_counts(s, y, CAFA_THRESHOLDS)
    for k, t in enumerate(CAFA_THRESHOLDS):
        np.testing.assert_array_equal(n_pred[:, k], (s >= t).sum(1))
        np.testing.assert_array_equal(tp[:, k], ((s >= t) & y).sum(1))


def test_fmax_by_hand() -> None:
    # protein 0: true {0, 1}, protein 1: true {2}; at t = 0.5: p0 predicts {0} (P 1, R 1/2), p1 predicts {2, 1}
    s = np.array([[0.9, 0.3, 0.0], [0.0, 0.6, 0.8]])
    y = np.array([[1, 1, 0], [0, 0, 1]])
    r = fmax(s, y, thresholds=np.array([0.5]))
    assert r.precision == pytest.approx((1 + 0.5) / 2) and r.recall == pytest.approx((0.5 + 1) / 2)
    assert r.fmax == pytest.approx(0.75) and r.coverage == 1.0


def test_filtered_ranks_skip_other_true_terms_and_split_ties() -> None:
    s = np.array([[0.9, 0.5, 0.5, 0.95, 0.1]])
    y = np.array([[1, 0, 0, 1, 1]])
    # term 4 (0.1): false terms above it: 0.5, 0.5 -> rank 3; the true 0.9 and 0.95 do not count
    assert filtered_term_ranks(s, y, [np.array([4, 0])])[0].tolist() == [3.0, 1.0]
    flat = np.zeros((1, 5))
    assert filtered_term_ranks(flat, y, [np.array([4])])[0].tolist() == [2.0]  # 1 + 2 tied false terms / 2


def test_go_prediction_metrics_perfect_and_constant() -> None:
    y = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]], dtype=np.uint8)  # term 0 is the root
    spec = [np.array([1]), np.array([2]), np.array([3])]
    perfect = go_prediction_metrics(y.astype(float), y, spec)
    assert perfect["fmax"] == pytest.approx(1.0) and perfect["mrr"] == 1.0 and perfect["hits@1"] == 1.0
    assert perfect["aupr"] == pytest.approx(1.0)
    const = go_prediction_metrics(np.full(y.shape, 0.5), y, spec)
    assert const["mrr"] == pytest.approx(1 / 2.0)  # two false terms tied: rank 1 + 2/2


# ---- baselines -----------------------------------------------------------------------------------------
def test_frequency_and_diamond_transfer_by_hand() -> None:
    ytr = np.array([[1, 1, 0], [1, 0, 1], [1, 0, 1], [1, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(bl.term_frequency_scores(ytr, 2), [[1, 0.25, 0.5]] * 2)
    hits = Hits(query=np.array([0, 0]), target=np.array([0, 1]), pident=np.array([50.0, 40.0]),
                length=np.array([100, 100]), qlen=np.array([100, 100]), slen=np.array([100, 100]),
                evalue=np.array([1e-9, 1e-5]), bitscore=np.array([30.0, 10.0]))
    for y in (ytr, sp.csr_matrix(ytr)):
        d = bl.diamond_transfer_scores(hits, y, 2)
        np.testing.assert_allclose(d, [[1.0, 0.75, 0.25], [0, 0, 0]])  # query 1: no hit
    present = bl.has_hit(hits, 2)
    b = bl.blend(d, bl.term_frequency_scores(ytr, 2), 0.5, present)
    np.testing.assert_allclose(b[1], [1, 0.25, 0.5])  # no hit: frequency alone
    np.testing.assert_allclose(b[0], 0.5 * d[0] + 0.5 * np.array([1, 0.25, 0.5]))
    alpha, _ = bl.choose_alpha(lambda s: -abs(float(s[0, 1]) - 0.5), d, bl.term_frequency_scores(ytr, 2), present)
    assert alpha == pytest.approx(0.5)  # alpha * 0.75 + (1 - alpha) * 0.25 = 0.5


def test_unannotated_training_proteins_neither_count_in_frequency_nor_vote_in_transfer() -> None:
    """A training protein without annotations in an ontology (an empty row) is unknown there: term frequency is the
    share among the annotated rows, and a DIAMOND or embedding neighbour without labels is left out of the vote."""
    ytr = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 0], [1, 0, 1]], dtype=np.float32)  # row 2: not annotated
    for y in (ytr, sp.csr_matrix(ytr)):
        np.testing.assert_array_equal(bl.labelled_rows(y), [True, True, False, True])
        np.testing.assert_allclose(bl.term_frequency_scores(y, 1), [[1, 1 / 3, 2 / 3]])
        # query 0: hits on row 0 (bits 30) and the unannotated row 2 (bits 90); query 1: on row 2 only
        hits = Hits(query=np.array([0, 0, 1]), target=np.array([0, 2, 2]), pident=np.array([50.0, 60.0, 60.0]),
                    length=np.array([100] * 3), qlen=np.array([100] * 3), slen=np.array([100] * 3),
                    evalue=np.array([1e-9] * 3), bitscore=np.array([30.0, 90.0, 90.0]))
        np.testing.assert_allclose(bl.diamond_transfer_scores(hits, y, 2), [[1, 1, 0], [0, 0, 0]])
        # the embedding transfer: the nearest neighbour (row 2) has no labels, rows 1 and 3 vote equally
        d = np.array([[0.1, 0.5, 0.5]])
        np.testing.assert_allclose(bl.embedding_transfer_scores(d, np.array([[2, 1, 3]]), y, tau=0.2), [[1, 0, 1]])


def test_blend_weights_per_identity_group_of_the_best_hit() -> None:
    # query 0: best hit (bitscore 90) at 80 % identity; query 1: best at 30 % (a weaker 95 % hit does not
    # count); query 2: 55 %; query 3: no hit
    hits = Hits(query=np.array([0, 1, 1, 2, 0]), target=np.array([0, 0, 1, 1, 2]),
                pident=np.array([80.0, 30.0, 95.0, 55.0, 20.0]), length=np.full(5, 100), qlen=np.full(5, 100),
                slen=np.full(5, 100), evalue=np.full(5, 1e-9), bitscore=np.array([90.0, 50.0, 20.0, 40.0, 10.0]))
    groups = bl.identity_groups(hits, 4)
    assert groups.tolist() == [2, 0, 1, -1]
    assert bl.identity_groups(hits, 4, bounds=(30.0,)).tolist() == [1, 1, 1, -1]  # 30 % is in the upper group
    a, b = np.ones((4, 2), np.float32), np.zeros((4, 2), np.float32)
    np.testing.assert_allclose(bl.blend_groups(a, b, [0.1, 0.5, 0.9], groups)[:, 0], [0.9, 0.1, 0.5, 0.0])
    # coordinate ascent finds a different weight for each group where one weight cannot fit all
    want = np.array([0.8, 0.2, 0.5, 0.0])

    def metric(s: np.ndarray) -> float:
        return -float(np.abs(s[:, 0] - want).sum())

    alphas, best = bl.choose_group_alphas(metric, a, b, groups, 3)
    assert alphas == pytest.approx([0.2, 0.5, 0.8]) and best == pytest.approx(0.0, abs=1e-6)
    _, v = bl.choose_alpha(metric, a, b, groups >= 0)
    assert v < best  # one weight for all groups is worse here
    # the queries without a hit as a fourth group: their weight scales b down there (a is 0 without a hit)
    weighted = bl.no_hit_group(groups, 3)
    assert weighted.tolist() == [2, 0, 1, 3]
    a0, b1 = a.copy(), np.ones((4, 2), np.float32)
    a0[3] = 0.0
    np.testing.assert_allclose(bl.blend_groups(a0, b1, [0.1, 0.5, 0.9, 0.4], weighted)[:, 0], [1.0, 1.0, 1.0, 0.6])
    want[3] = 0.25  # only a scaled-down b fits the no-hit row

    def metric2(s: np.ndarray) -> float:
        return -float(np.abs(s[:, 0] - want).sum())

    al4, best4 = bl.choose_group_alphas(metric2, a0, b * 0 + 0.5, weighted, 4)
    assert al4[3] == pytest.approx(0.5) and best4 > bl.choose_group_alphas(metric2, a0, b * 0 + 0.5, groups, 3)[1]


def test_fmax_by_protein_matches_fmax_and_speeds_the_group_search_without_changing_it() -> None:
    rng = np.random.default_rng(4)
    y = rng.random((300, 40)) < 0.15
    y[:20] = False  # proteins without a true term do not count
    keep = np.ones(40, dtype=bool)
    keep[0] = False  # e.g. the root left out
    m = FmaxByProtein(y, columns=keep)
    s = np.round(rng.random((300, 40)), 3).astype(np.float32)
    assert m(s) == pytest.approx(fmax(s[:, keep], y[:, keep]).fmax, abs=1e-12)
    # a blend of DIAMOND-like sparse scores with frequency-like ones; three identity groups and no-hit rows
    a = np.where(rng.random((300, 40)) < 0.2, y * 0.6 + rng.random((300, 40)) * 0.4, 0.0).astype(np.float32)
    b = np.tile(y.mean(0), (300, 1)).astype(np.float32)
    groups = rng.integers(-1, 3, 300)

    def plain(x: np.ndarray) -> float:
        return fmax(x[:, keep], y[:, keep]).fmax

    fast_al, fast_v = bl.choose_group_alphas(m, a, b, groups, 3)
    slow_al, slow_v = bl.choose_group_alphas(plain, a, b, groups, 3)
    assert fast_al == slow_al and fast_v == pytest.approx(slow_v, abs=1e-12)
    assert fast_v == pytest.approx(plain(bl.blend_groups(a, b, fast_al, groups)), abs=1e-12)
    assert fast_v >= max(plain(bl.blend_groups(a, b, [w] * 3, groups)) for w in (0.0, 1.0))
    with pytest.raises(ValueError, match="no protein has a true annotation"):
        FmaxByProtein(np.zeros((3, 4)))


def test_embedding_transfer_weights_by_softmax_of_distance() -> None:
    ytr = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=np.float32)
    dist = np.array([[0.1, 0.3, 0.9], [0.2, 0.2, np.inf]])
    index = np.array([[0, 1, 2], [2, 1, -1]])  # query 1 has two neighbours (padding -1)
    tau = 0.2
    w0 = np.exp(-dist[0] / tau) / np.exp(-dist[0] / tau).sum()
    for y in (ytr, sp.csr_matrix(ytr)):
        s = bl.embedding_transfer_scores(dist, index, y, tau)
        np.testing.assert_allclose(s[0], w0 @ ytr, rtol=1e-6)
        np.testing.assert_allclose(s[1], [0.5, 0, 1.0], rtol=1e-6)
    # a tiny temperature is the nearest neighbour's labels, without overflow or NaN
    np.testing.assert_allclose(bl.embedding_transfer_scores(dist * 1e3, index, ytr, 1e-3)[0], ytr[0])
    with pytest.raises(ValueError, match="tau"):
        bl.embedding_transfer_scores(dist, index, ytr, 0.0)


# ---- sequence tools and splits on made-up protein families -----------------------------------------------
def families(n_fam: int, size: int, length: int = 160, mutate: float = 0.1, seed: int = 0) -> tuple[list, list, list]:
    """``n_fam`` unrelated random sequences, each with ``size`` copies mutated at ``mutate`` of the sites."""
    rng = np.random.default_rng(seed)
    ids, seqs, fam = [], [], []
    for f in range(n_fam):
        root = rng.choice(AA, length)
        for k in range(size):
            s = root.copy()
            sites = rng.random(length) < mutate
            s[sites] = rng.choice(AA, int(sites.sum()))
            ids.append(f"F{f}_{k}")
            seqs.append("".join(s))
            fam.append(f)
    return ids, seqs, fam


def test_mmseqs_clusters_families_and_diamond_finds_only_relatives() -> None:
    ids, seqs, fam = families(6, 4)
    labels = mmseqs_cluster(ids, seqs, 0.3, 0.5, sensitivity=4.0, threads=2)
    assert len(set(labels.tolist())) == 6
    assert all(len({labels[i] for i in range(len(ids)) if fam[i] == f}) == 1 for f in range(6))
    hits = diamond_blastp(ids[:4], seqs[:4], ids[4:], seqs[4:], threads=2)  # family 0 against families 1..5
    assert len(hits) == 0
    hits = diamond_blastp(ids[:1], seqs[:1], ids[1:], seqs[1:], threads=2)
    assert sorted(hits.target.tolist()) == [0, 1, 2] and (hits.pident > 70).all()


def test_homolog_lists_are_each_family_without_itself_and_cached(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import hypalign.data.seqtools as seqtools

    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path))
    ids, seqs, fam = families(5, 4, seed=2)
    ids, seqs, fam = [*ids, "LONE"], [*seqs, "".join(np.random.default_rng(9).choice(AA, 160))], [*fam, -1]
    indptr, targets, pident = seqtools.homolog_lists(ids, seqs, threads=2)
    assert indptr.shape == (len(ids) + 1,) and indptr[-1] == len(targets)
    for i in range(len(ids)):
        got = targets[indptr[i] : indptr[i + 1]].tolist()
        assert sorted(got) == [j for j in range(len(ids)) if fam[j] == fam[i] and j != i and fam[i] >= 0]
    assert pident.shape == targets.shape
    hits = diamond_blastp(ids, seqs, ids, seqs, threads=2)  # each pair's identity is that of its best hit
    for i in range(len(ids)):
        for t, p in zip(targets[indptr[i] : indptr[i + 1]], pident[indptr[i] : indptr[i + 1]], strict=True):
            pair = (hits.query == i) & (hits.target == t)
            assert p == pytest.approx(hits.pident[pair][np.argmax(hits.bitscore[pair])], abs=1e-3)
    cut = seqtools.homolog_lists(ids, seqs, max_target_seqs=2, threads=2)  # at most 2 each
    assert (np.diff(cut[0]) == np.where(np.array(fam) >= 0, 2, 0)).all()

    def no_diamond(*a: object, **k: object) -> None:
        raise AssertionError("DIAMOND ran although the result is cached")

    monkeypatch.setattr(seqtools, "diamond_blastp", no_diamond)
    again = seqtools.homolog_lists(ids, seqs, threads=2)
    assert (again[0] == indptr).all() and (again[1] == targets).all() and (again[2] == pident).all()
    with pytest.raises(AssertionError, match="cached"):  # another set is not served from the cache
        seqtools.homolog_lists(ids[:-1], seqs[:-1], threads=2)


def held_out_hits(parts: dict, ids: list, seqs: list, fam: list, **diamond: object) -> Hits:
    """Checks that no family straddles two parts; returns DIAMOND's hits of the held-out proteins in train."""
    where = {a: k for k, v in parts.items() for a in v}
    fam_of = dict(zip(ids, fam, strict=True))
    for f in set(fam):
        assert len({where[a] for a in ids if fam_of[a] == f and a in where}) <= 1
    pos = {a: i for i, a in enumerate(ids)}
    held = parts["test"] + parts["valid"]
    return diamond_blastp(held, [seqs[pos[a]] for a in held], parts["train"], [seqs[pos[a]] for a in parts["train"]],
                          threads=2, **diamond)  # type: ignore[arg-type]


def test_hard_split_keeps_families_together_and_held_out_below_30_percent() -> None:
    ids, seqs, fam = families(40, 5, seed=1)
    parts, info = hard_split(ids, seqs, {"train": 120, "valid": 20, "test": 20}, seed=3, threads=2)
    assert {k: len(v) for k, v in parts.items()} == {"train": 120, "valid": 20, "test": 20}
    hits = held_out_hits(parts, ids, seqs, fam)
    assert not ((hits.pident >= 30) & (hits.shorter_coverage >= 0.5)).any()
    assert info["clusters"] == 40 and "mmseqs" in info["tools"]
    again, _ = hard_split(ids, seqs, {"train": 120, "valid": 20, "test": 20}, seed=3, threads=2)
    assert again == parts  # deterministic


def test_nohit_split_leaves_no_held_out_protein_with_any_diamond_hit_in_train() -> None:
    """``check="any-hit"`` (the no-hit splits): families stay in one part and DIAMOND, asked again independently at
    e <= 10 with every hit read, finds nothing for a test or valid protein in train."""
    ids, seqs, fam = families(40, 5, seed=2)
    want = {"train": 100, "valid": 15, "test": 15}
    parts, info = hard_split(ids, seqs, want, seed=4, threads=2, check="any-hit")
    assert {k: len(v) for k, v in parts.items()} == want
    assert "e <= 10, all targets" in info["criteria"] and "dropped_by_any_hit_check" in info
    hits = held_out_hits(parts, ids, seqs, fam, evalue=10.0, max_target_seqs=0)
    assert len(hits.query) == 0
    with pytest.raises(ValueError, match="expected identity or any-hit"):
        hard_split(ids, seqs, want, seed=4, threads=2, check="anything")


def test_hard_split_of_the_whole_pool_keeps_every_survivor_when_the_check_drops_many(monkeypatch) -> None:
    """``full-hard`` has no larger sample to draw from: when the DIAMOND check leaves fewer held-out proteins
    than aimed at, all survivors are kept and the shortfall recorded; a sampled pool (``small``) raises."""
    from hypalign.data import seqtools

    ids, seqs, _ = families(40, 5, seed=1)
    real = seqtools.diamond_blastp

    def copies_in_train(qids, qseqs, tids, tseqs, **kw):  # the first 30 held-out proteins get a 100 % twin in train
        return real(qids, qseqs, tids, list(qseqs[:30]) + list(tseqs[30:]), **kw)

    monkeypatch.setattr(seqtools, "diamond_blastp", copies_in_train)
    want = {"train": 120, "valid": 20, "test": 20}
    parts, info = hard_split(ids, seqs, want, seed=3, threads=2)
    # held out before the check: 40 test then 40 valid candidates; 30 test candidates fail it
    assert info["dropped_by_identity_check"] == 30 and info["held_out_short_of_target"] == {"test": 10}
    assert {k: len(v) for k, v in parts.items()} == {"train": 120, "valid": 20, "test": 10}
    with pytest.raises(RuntimeError, match="only 10 test proteins left"):
        hard_split(ids, seqs, want, pool_size=len(ids), seed=3, threads=2)


def test_random_split_is_seeded_and_disjoint() -> None:
    accs = [f"P{i}" for i in range(30_000)]
    a, b = random_split(accs, "small", 0), random_split(accs, "small", 0)
    assert a == b and random_split(accs, "small", 1) != a
    assert {k: len(v) for k, v in a.items()} == {"train": 20_000, "valid": 2_000, "test": 2_000}
    assert len(set(a["train"]) | set(a["valid"]) | set(a["test"])) == 24_000


def test_split_files_round_trip_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "s"
    write_split(d, {"train": ["A", "B"], "valid": ["C"], "test": ["D"]}, {"name": "mine"})
    s = read_split(d)
    assert (s.train, s.valid, s.test) == (["A", "B"], ["C"], ["D"]) and s.info == {"name": "mine"}
    (d / "test.txt").write_text("D\nA\n")
    with pytest.raises(InputError, match=r"test.txt: line 2: A is already listed in train.txt line 1"):
        read_split(d)
    (d / "test.txt").unlink()
    with pytest.raises(InputError, match=r"test\.txt is missing"):
        read_split(d)
    data = GODataset(["A", "B"], ["MK", "ML"], {"BP": [[], []], "MF": [[], []], "CC": [[], []]})
    with pytest.raises(InputError, match=r"train.txt: line 2: accession 'Z' is not in the data set"):
        data.indices(["A", "Z"], source="train.txt")


def test_describe_protein_and_user_dataset(tmp_path: Path) -> None:
    names = {"GO:0005524": "ATP binding", "GO:0006412": "translation", "GO:0005737": "cytoplasm"}
    text = describe_protein({"MF": ["GO:0005524"], "BP": ["GO:0006412"], "CC": ["GO:0005737"]}, names)
    assert text == "FUNCTION: ATP binding; PROCESS: translation; LOCATION: cytoplasm"
    assert describe_protein({"MF": [], "BP": ["GO:0006412"]}, names) == "PROCESS: translation"
    fa = tmp_path / "p.fasta"
    fa.write_text(">sp|P1|X_HUMAN\nMKV\n>P2\nMLA\n")
    ann = tmp_path / "a.tsv"
    ann.write_text("P1\tGO:0005524,GO:0006412,GO:9999999\n")
    with pytest.warns(UserWarning, match="1 GO ids are not in the GO graph"):
        data = user_go_dataset(fa, ann)
    assert data.accessions == ["P1", "P2"]
    assert data.terms["MF"] == [["GO:0005524"], []] and data.terms["BP"] == [["GO:0006412"], []]


def test_property_driven_sampling_probabilities_and_uniprot_headers(tmp_path: Path) -> None:
    from hypalign.data.protein import property_driven_sample, property_keep_probability, read_uniprot_headers

    p = property_keep_probability(np.array([4, 3, 4, 2, 4, 4]), np.array([1, 2, 3, 1, 4, 5]))
    np.testing.assert_allclose(p, [1.0, math.sqrt(0.75) / 8, 1 / 27, 0.0, 0.0, 0.0])  # sqrt(c/4) / e^3
    fa = tmp_path / "u.fasta"
    fa.write_text(">sp|P1|K_HUMAN Kinase 1 OS=Homo sapiens OX=9606 GN=K1 PE=1 SV=2\nMKV\n"
                  ">tr|Q2|Q2_MOUSE Uncharacterized protein OS=Mus musculus OX=10090 PE=4 SV=1\nMLA\n"
                  ">tr|Q3|Q3_MOUSE OS=Mus musculus PE=2 SV=1\nMLA\n")
    assert read_uniprot_headers(fa) == {"P1": ("Kinase 1", 1), "Q2": ("Uncharacterized protein", 4), "Q3": ("", 2)}
    ann = tmp_path / "a.tsv"
    ann.write_text("P1\tGO:0005524,GO:0006412,GO:0005737\nQ2\tGO:0005524,GO:0006412,GO:0005737\nQ3\tGO:0005524\n")
    data = user_go_dataset(fa, ann)
    assert data.existence == [1, 4, 2] and data.named == [True, True, False]
    # P1: c = 4, e = 1 -> always kept; Q2: e = 4 -> never; Q3: c = 1 (MF only, no name) -> never
    assert property_driven_sample(data, np.arange(3), seed=5).tolist() == [0]
    # many c = 4, e = 2 proteins: about 1/8 kept, deterministic per seed
    big = GODataset([f"A{i}" for i in range(4000)], ["MK"] * 4000, {o: [["GO:1"]] * 4000 for o in ("BP", "MF", "CC")},
                    existence=[2] * 4000, named=[True] * 4000)
    kept = property_driven_sample(big, np.arange(4000), seed=1)
    assert abs(len(kept) / 4000 - 1 / 8) < 0.02
    assert kept.tolist() == property_driven_sample(big, np.arange(4000), seed=1).tolist()
    # no existence levels (reviewed Swiss-Prot, as metastudent-data): kept whole, as ProtCLIP keeps ProtAnno-S
    assert property_driven_sample(GODataset(["A"], ["MK"], {"MF": [[]]}), np.arange(1)).tolist() == [0]


@pytest.mark.slow
def test_small_hard_split_on_swissprot_has_no_close_homolog_in_train() -> None:
    """The real small-hard split (made on first use, ~3 min): sizes, recorded criteria, and DIAMOND
    finds no held-out protein >= 30 % identical over >= 50 % of the shorter sequence to a training one."""
    from hypalign.data.protein import metastudent_go_dataset
    from hypalign.data.splits import load_split

    s = load_split("small-hard")
    assert (len(s.train), len(s.valid), len(s.test)) == (20_000, 2_000, 2_000)
    assert s.info is not None and "min-seq-id 0.3" in s.info["criteria"]
    data = metastudent_go_dataset()
    seq = dict(zip(data.accessions, data.sequences, strict=True))
    hits = diamond_blastp(s.test, [seq[a] for a in s.test], s.train, [seq[a] for a in s.train], max_target_seqs=0)
    assert not ((hits.pident >= 30) & (hits.shorter_coverage >= 0.5)).any()
    assert 0 < len(set(hits.query.tolist())) < len(s.test)  # weaker hits remain for some: the baseline's case


@pytest.mark.slow
def test_small_nohit_split_on_swissprot_has_no_diamond_hit_in_train() -> None:
    """The real small-nohit split (made on first use, ~3 min): sizes, its union pool, and DIAMOND (e <= 10, every hit)
    finds nothing for a test protein among the training proteins."""
    from hypalign.data.protein import metastudent_go_dataset
    from hypalign.data.splits import load_split

    s = load_split("small-nohit")
    assert (len(s.train), len(s.valid), len(s.test)) == (20_000, 2_000, 2_000)
    assert s.info is not None and "e <= 10, all targets" in s.info["criteria"] and "any of" in s.info["pool"]
    data = metastudent_go_dataset(require_all=False)
    seq = dict(zip(data.accessions, data.sequences, strict=True))
    hits = diamond_blastp(s.test, [seq[a] for a in s.test], s.train, [seq[a] for a in s.train], evalue=10.0,
                          max_target_seqs=0)
    assert len(hits.query) == 0


@pytest.mark.slow
def test_full_hard_split_on_swissprot_has_no_close_homolog_in_train() -> None:
    """The real full-hard split (made on first use, ~27 min on 2 cores): disjoint parts, train 80 % of the
    pool, held-out parts at most 5 % each, and DIAMOND finds no close training homolog for 1,000 test and
    1,000 valid proteins drawn at random (the whole check over every hit takes ~18 min)."""
    from hypalign.data.protein import metastudent_go_dataset
    from hypalign.data.splits import load_split

    s = load_split("full-hard")
    data = metastudent_go_dataset()
    n = len(data)
    parts = [set(s.train), set(s.valid), set(s.test)]
    assert sum(map(len, parts)) == len(parts[0] | parts[1] | parts[2]) <= n
    assert s.info is not None and s.info["dropped_by_identity_check"] > 0
    # whole clusters, >= 10 % of the pool to each held-out part before the check; train is all the rest
    assert len(s.train) + s.info["held_out_checked"] == n and len(s.train) <= n - 4 * round(0.05 * n)
    assert 0 < len(s.valid) <= round(0.05 * n) and 0 < len(s.test) <= round(0.05 * n)
    seq = dict(zip(data.accessions, data.sequences, strict=True))
    rng = np.random.default_rng(0)
    held = [a for part in (s.test, s.valid) for a in rng.choice(part, 1000, replace=False).tolist()]
    hits = diamond_blastp(held, [seq[a] for a in held], s.train, [seq[a] for a in s.train], max_target_seqs=0)
    assert not ((hits.pident >= 30) & (hits.shorter_coverage >= 0.5)).any()


def test_cli_baselines_on_a_split_directory_of_swissprot_accessions(tmp_path: Path) -> None:
    """`--split DIR` end to end on real proteins: 300 train / 40 valid / 40 test from metastudent-data."""
    from typer.testing import CliRunner

    from hypalign.cli.main import app
    from hypalign.data.protein import metastudent_go_dataset

    accs = metastudent_go_dataset().accessions
    rng = np.random.default_rng(0)
    pick = [accs[i] for i in rng.choice(len(accs), 380, replace=False)]
    write_split(tmp_path / "s", {"train": pick[:300], "valid": pick[300:340], "test": pick[340:]}, {})
    runner = CliRunner()
    res = runner.invoke(app, ["protein", "baselines", "--split", str(tmp_path / "s"), "--json", "--threads", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["metrics"]) == {"frequency", "diamond", "diamond+frequency"}
    # checked against figures computed here, independently: term frequency's Fmax by brute force over CAFA's
    # thresholds (root left out; precision over proteins with a prediction, recall over all annotated proteins), and
    # DIAMOND's coverage from its hits
    from hypalign.data.go_split import prepare_go_split
    from hypalign.eval.baselines import diamond_hits, run_baselines

    gsd = prepare_go_split(str(tmp_path / "s"))
    hits = diamond_hits(gsd, "test", threads=2)
    assert out["diamond_coverage"] == pytest.approx(len(set(hits.query.tolist())) / 40)
    no_hit = ~np.isin(np.arange(40), hits.query)
    sub = out["subsets"]["no DIAMOND hit"]  # the same table on the test proteins DIAMOND finds nothing for
    assert sub["n_test"] == int(no_hit.sum()) > 0 and set(sub["metrics"]) == set(out["metrics"])
    for ont in ("BP", "MF", "CC"):
        root = gsd.ontologies[ont].root
        freq = np.asarray(gsd.truth[ont]["train"].mean(0)).ravel()
        keep = np.ones(len(freq), bool)
        keep[root] = False
        for table, rows in ((out["metrics"], np.ones(40, bool)), (sub["metrics"], no_hit)):
            y = gsd.truth[ont]["test"].astype(bool)[rows][:, keep]
            sc = np.broadcast_to(freq[keep], y.shape)
            y_rows = y.any(1)
            best = 0.0
            for t in np.round(np.arange(1, 101) / 100, 2):
                pred = sc[y_rows] >= t
                tp = (pred & y[y_rows]).sum(1)
                has = pred.sum(1) > 0
                if not has.any():
                    continue
                prec = (tp[has] / pred.sum(1)[has]).mean()
                rec = (tp / y[y_rows].sum(1)).mean()
                best = max(best, 2 * prec * rec / (prec + rec) if prec + rec else 0.0)
            assert table["frequency"][ont]["fmax"] == pytest.approx(best, abs=1e-9), ont
            assert table["frequency"][ont]["n_proteins"] == int(y_rows.sum())
        assert sub["metrics"]["diamond"][ont]["fmax"] == 0.0  # nothing to transfer there
    # aupr=False (the benchmark scripts): the same figures without AUPR
    quick = run_baselines(gsd, "test", threads=2, aupr=False)["metrics"]
    for method, per in quick.items():
        for ont, m in per.items():
            assert "aupr" not in m and "aupr" in out["metrics"][method][ont]
            assert m["fmax"] == pytest.approx(out["metrics"][method][ont]["fmax"])
            assert m["mrr"] == pytest.approx(out["metrics"][method][ont]["mrr"])
    bad = runner.invoke(app, ["protein", "baselines", "--split", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "neither a built-in split" in bad.output


def test_outdated_cached_hard_split_is_remade_and_the_old_one_kept(tmp_path: Path, monkeypatch) -> None:
    """A hard split cached by the version 1 identity check (25 DIAMOND targets per query) is moved to NAME-v1
    and made again; an up-to-date one is read as is."""
    from hypalign.data import splits

    monkeypatch.setenv("HYPALIGN_CACHE_DIR", str(tmp_path))
    d = splits.split_dir("small-hard")
    write_split(d, {"train": ["A", "B"], "valid": ["C"], "test": ["D"]}, {"name": "small-hard", "clusters": 3})
    made: list[str] = []

    def fake_make(name: str, out: Path, seed: int = 0, **kw) -> None:
        made.append(name)
        write_split(out, {"train": ["A"], "valid": ["C"], "test": ["B"]}, {"check_version": 2})

    monkeypatch.setattr(splits, "make_split", fake_make)
    s = splits.load_split("small-hard")
    assert made == ["small-hard"] and s.test == ["B"]
    assert read_split(d.with_name("small-hard-v1")).test == ["D"]
    assert s.fingerprint() != read_split(d.with_name("small-hard-v1")).fingerprint()
    assert splits.load_split("small-hard").test == ["B"] and made == ["small-hard"]  # current: not remade
