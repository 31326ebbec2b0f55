"""Protein backbone data (hypalign.data.structures): ProMod3's raw StructureDB read with numpy from a tiny file written
to the published layout, the compact cache, cluster splits, and a user's PDB / mmCIF files through gemmi (modified
residues mapped, incomplete residues and chain breaks handled, one-line errors). The real package: a slow check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hypalign.data.structures import (
    HEADER,
    convert_structure_db,
    load_structures,
    read_structure_db,
    read_structure_file,
    structure_splits,
    write_splits,
)
from hypalign.errors import InputError


def write_db(path: Path, chains: list[tuple[str, str, str, np.ndarray, np.ndarray]], order: list[int] | None = None,
             stored: int = -1) -> None:
    """A StructureDB file in ProMod3's raw layout (shared/spec/promod3-structdb.md): chains ``(pdb id, chain name,
    sequence, dssp, coords (L, 4, 3) in Å)``, residues in ``order`` of the chains (file order of the TOC is the list
    order; the residue arrays may hold them in another order)."""
    order = order if order is not None else list(range(len(chains)))
    starts, pos = {}, 0
    for i in order:
        starts[i] = pos
        pos += len(chains[i][2])
    toc = bytearray(np.uint64(len(chains)).tobytes())
    shifts = []
    for i, (pid, ch, seq, _, xyz) in enumerate(chains):
        shift = -xyz.reshape(-1, 3).min(0) + np.float32(0.5)  # stored = original + shift >= 0
        shifts.append(shift.astype(np.float32))
        toc += np.uint32(len(pid)).tobytes() + pid.encode() + np.uint32(len(ch)).tobytes() + ch.encode()
        toc += np.uint32(starts[i]).tobytes() + np.uint16(len(seq)).tobytes() + np.uint16(1).tobytes()
        toc += shifts[-1].tobytes()
    n = pos
    seq = b"".join(chains[i][2].encode() for i in order)
    coords = np.concatenate([np.round((chains[i][4] + shifts[i]) * 100).astype("<u2") for i in order])
    dssp = b"".join(chains[i][3].encode() for i in order)
    body = bytearray(HEADER + np.int32(stored).tobytes()) + toc
    body += np.uint64(n).tobytes() + seq + np.uint64(n).tobytes() + coords.tobytes()
    extra = {1: 4, 2: 2, 4: 2, 8: 1, 16: 40, 32: 40}
    for bit, width in extra.items():
        if stored & bit:
            body += np.uint64(n).tobytes() + (dssp if bit == 8 else bytes(n * width))
    path.write_bytes(bytes(body))


def helix(n: int, seed: int) -> np.ndarray:
    """``(n, 4, 3)`` made-up backbone coordinates along a helix-like curve (N, CA, C, O per residue)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    ca = np.stack([2.3 * np.cos(t * 1.75), 2.3 * np.sin(t * 1.75), 1.5 * t], axis=1) + 20
    offs = np.array([[-1.0, 0.4, -0.3], [0, 0, 0], [1.0, 0.5, 0.4], [1.5, 1.4, 0.2]])
    return (ca[:, None, :] + offs[None] + rng.normal(0, 0.05, (n, 4, 3))).astype(np.float32)


CHAINS = [("1ABC", "A", "MKTAYIAKQR", "CHHHHHHHCC", helix(10, 0)),
          ("2XYZ", "B", "GSHM", "CEEC", helix(4, 1)),
          ("3DEF", "A", "ACDEFGHIKLMNPQRSTVWY", "CCHHHHHHHHHHHHHHHHCC", helix(20, 2))]


def test_reads_the_raw_layout_in_the_pdb_frame(tmp_path: Path) -> None:
    write_db(tmp_path / "db.dat", CHAINS, order=[2, 0, 1])  # residue arrays in another order than the TOC
    ss, raw = read_structure_db(tmp_path / "db.dat")
    assert ss.ids == ["3DEF_A", "1ABC_A", "2XYZ_B"]  # by residue offset
    assert [ss.sequence(i) for i in range(3)] == ["ACDEFGHIKLMNPQRSTVWY", "MKTAYIAKQR", "GSHM"]
    assert bytes(ss.dssp[ss.offsets[1] : ss.offsets[2]]) == b"CHHHHHHHCC"
    for i, src in zip(range(3), (2, 0, 1), strict=True):
        np.testing.assert_allclose(ss.backbone(i), CHAINS[src][4], atol=0.0051)  # 0.01 Å quantisation
    assert raw["coords_u16"].dtype == np.uint16 and raw["coords_u16"].shape == (34, 4, 3)
    # DSSP absent (stored_data without bit 8): coil
    write_db(tmp_path / "nodssp.dat", CHAINS, stored=1 | 2)
    ss2, _ = read_structure_db(tmp_path / "nodssp.dat")
    assert set(bytes(ss2.dssp)) == {ord("C")}
    # the compact cache reads back to the same chains
    out = convert_structure_db(tmp_path / "db.dat", tmp_path / "c.npz")
    again = load_structures(out)
    assert again.ids == ss.ids and np.array_equal(again.offsets, ss.offsets) and np.array_equal(again.seq, ss.seq)
    np.testing.assert_array_equal(again.coords, ss.coords)
    sub = ss.subset([2, 0])
    assert sub.ids == ["2XYZ_B", "3DEF_A"] and sub.sequence(1) == "ACDEFGHIKLMNPQRSTVWY"
    np.testing.assert_array_equal(sub.backbone(0), ss.backbone(2))


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    write_db(tmp_path / "db.dat", CHAINS)
    data = (tmp_path / "db.dat").read_bytes()
    for name, blob, msg in (("hdr.dat", b"\x00" + data[1:], "header differs"),
                            ("cut.dat", data[:-7], "truncated"),
                            ("tail.dat", data + b"\x00\x01", "2 bytes after the last array")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError) as err:
            read_structure_db(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and msg in str(err.value)


def test_splits_keep_clusters_whole_and_are_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    chains = [(f"{i:04d}", "A", "A" * int(n), "C" * int(n), np.zeros((int(n), 4, 3), np.float32))
              for i, n in enumerate(rng.integers(20, 600, 120))]
    write_db(tmp_path / "db.dat", chains)
    ss, _ = read_structure_db(tmp_path / "db.dat")
    clusters = rng.integers(0, 40, len(ss))
    a = structure_splits(ss, "full", clusters=clusters, seed=1)
    assert a == structure_splits(ss, "full", clusters=clusters, seed=1)
    assert a != structure_splits(ss, "full", clusters=clusters, seed=2)
    lengths = ss.lengths()
    kept = set(np.flatnonzero((lengths >= 40) & (lengths <= 512)).tolist())
    parts = [set(a[k]) for k in ("train", "valid", "test")]
    assert set().union(*parts) == kept and sum(map(len, parts)) == len(kept)  # every kept chain once
    owner = {}
    for k, part in enumerate(parts):
        for r in part:
            assert owner.setdefault(int(clusters[r]), k) == k  # a cluster never spans two parts
    assert 0 < len(parts[2]) and 0 < len(parts[1]) and len(parts[0]) > len(parts[2])
    d = write_splits(ss, a, tmp_path / "split", {"seed": 1})
    assert (d / "test.txt").read_text().split() == [ss.ids[r] for r in a["test"]]
    with pytest.raises(InputError, match="split size 'medium'"):
        structure_splits(ss, "medium", clusters=clusters)


def straight(n: int) -> np.ndarray:
    """``(n, 4, 3)`` a made-up extended backbone with real bond lengths (C(i)-N(i+1) 1.38 Å, N-CA 1.44 Å)."""
    base = np.arange(n, dtype=np.float64)[:, None] * np.array([3.8, 0.0, 0.0])
    atoms = np.array([[0.0, 0.0, 0.0], [1.2, 0.8, 0.0], [2.45, 0.3, 0.0], [2.6, -0.9, 0.3]])
    return (base[:, None, :] + atoms[None] + 5.0).astype(np.float32)


def _pdb(tmp_path: Path, name: str = "9tst.pdb") -> Path:
    """A PDB file of chain A: 6 residues (the 3rd a selenomethionine HETATM, the 5th missing its O, an UNK after it),
    then a 3-residue stretch 10 Å away (a chain break); chain B: 2 residues."""
    import gemmi

    xyz = straight(12).astype(np.float64)
    st = gemmi.Structure()
    st.name = "9TST"
    model = gemmi.Model(1)
    spec = [("A", "MET", 0), ("A", "LYS", 1), ("A", "MSE", 2), ("A", "ALA", 3), ("A", "GLY", 4), ("A", "UNK", 5),
            ("A", "SER", 6), ("A", "THR", 7), ("A", "VAL", 8), ("B", "LEU", 9), ("B", "ILE", 10)]
    chains: dict[str, gemmi.Chain] = {}
    for k, (cname, rname, i) in enumerate(spec):
        ch = chains.setdefault(cname, gemmi.Chain(cname))
        res = gemmi.Residue()
        res.name, res.seqid = rname, gemmi.SeqId(k + 1, " ")
        res.het_flag = "H" if rname == "MSE" else "A"
        shift = np.array([10.0, 0, 0]) if i >= 6 and cname == "A" else 0
        for a_i, a in enumerate(("N", "CA", "C", "O")):
            if rname == "GLY" and a == "O":
                continue
            atom = gemmi.Atom()
            atom.name, atom.element = a, gemmi.Element(a[0])
            atom.pos = gemmi.Position(*(xyz[i, a_i] + shift))
            res.add_atom(atom)
        ch.add_residue(res)
    for ch in chains.values():
        model.add_chain(ch)
    st.add_model(model)
    st.setup_entities()
    p = tmp_path / name
    if name.endswith(".cif"):
        st.make_mmcif_document().write_file(str(p))
    else:
        st.write_pdb(str(p))
    return p


@pytest.mark.parametrize("name", ["9tst.pdb", "9tst.cif"])
def test_user_structure_files(tmp_path: Path, name: str) -> None:
    p = _pdb(tmp_path, name)
    ss, rep = read_structure_file(p)
    assert ss.ids == ["9TST_A", "9TST_A.2", "9TST_B"]
    assert [ss.sequence(i) for i in range(3)] == ["MKMA", "STV", "LI"]  # MSE -> M; GLY (no O) and UNK left out
    assert (rep.skipped_incomplete, rep.skipped_nonstandard, rep.breaks) == (1, 1, 1)
    xyz = straight(12)
    np.testing.assert_allclose(ss.backbone(0)[2], xyz[2], atol=1e-3)
    np.testing.assert_allclose(ss.backbone(1)[0], xyz[6] + np.array([10.0, 0, 0], np.float32), atol=1e-3)
    only_b, _ = read_structure_file(p, chain="B")
    assert only_b.ids == ["9TST_B"]
    for kwargs, msg in (({"chain": "Z"}, "no chain 'Z' (chains: A, B)"),
                        ({"strict": True}, "residue GLY 5: missing backbone atom O")):
        with pytest.raises(InputError) as err:
            read_structure_file(p, **kwargs)
        assert str(err.value).startswith(str(p)) and msg in str(err.value)
    (tmp_path / "empty.pdb").write_text("")
    with pytest.raises(InputError, match="empty file"):
        read_structure_file(tmp_path / "empty.pdb")
    water = "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00  0.00           O\nEND\n"
    (tmp_path / "water.pdb").write_text(water)
    with pytest.raises(InputError, match="no protein chain with a complete backbone"):
        read_structure_file(tmp_path / "water.pdb")


@pytest.mark.slow
def test_the_packaged_database() -> None:
    """Debian promod3-data, fetched and converted (about a minute), against the counts its layout document gives."""
    from hypalign.data.structures import fetch_structures

    ss = load_structures(fetch_structures())
    assert len(ss) == 21119 and int(ss.offsets[-1]) == 4561225
    assert ss.ids[0] == "12AS_A" and ss.sequence(0).startswith("AYIAKQRQISFVKSHFSRQLEERLGLIEVQ")
    lengths = ss.lengths()
    assert (lengths.min(), lengths.max(), int(((lengths >= 40) & (lengths <= 512)).sum())) == (2, 1754, 19699)
    assert len({ss.sequence(i) for i in range(len(ss))}) == 21105
    bond = np.linalg.norm(ss.coords[:, 1] - ss.coords[:, 0], axis=1)  # N-CA
    assert abs(float(np.median(bond)) - 1.459) < 0.005
