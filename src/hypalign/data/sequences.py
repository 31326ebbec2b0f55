"""Protein sequences for language-model pre-training: a compact store, the packaged Swiss-Prot set, and the removal of
every held-out protein and its homologs.

* :class:`SequenceSet` — ids plus every sequence's ESM-2 token ids concatenated (``uint8``) with offsets: random
  windows of 500k sequences without 500k Python strings per batch;
* :func:`swissprot_sequences` — the union of the three ontologies' Swiss-Prot proteins in Debian's
  ``metastudent-data`` (516,371 distinct accessions, 187 M residues), cached once as ``.npz``;
* :func:`held_out_sequences` — the valid and test proteins of a protein GO split (``small-hard`` …, or a split
  directory) or of a structure split (``structures:small`` …: the chains' sequences);
* :func:`exclude_held_out` — a pool minus the held-out accessions and every sequence DIAMOND finds at ≥ ``identity`` %
  (e-value ≤ 1e-3, every hit read) to a held-out one: the held-out clusters' share of the pool, so that a language
  model pre-trained on the rest has seen neither the test proteins nor their close homologs. Cached per held-out set.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hypalign.errors import InputError


def _letter_table() -> np.ndarray:
    from hypalign.encoders.protein import ESM_TOKENS

    return np.array([ord(t) if len(t) == 1 else ord("X") for t in ESM_TOKENS], np.uint8)


_LETTERS = _letter_table()  # token id -> ASCII letter


@dataclass
class SequenceSet:
    """``ids[i]``; sequence ``i``'s token ids (ESM-2's alphabet, :mod:`hypalign.encoders.protein`) are
    ``tokens[offsets[i] : offsets[i + 1]]``."""

    ids: list[str]
    tokens: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len(ids) + 1

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def window(self, i: int, start: int, length: int) -> np.ndarray:
        """Residue ids of sequence ``i`` from ``start`` (at most ``length``)."""
        a = int(self.offsets[i]) + start
        return self.tokens[a : min(a + length, int(self.offsets[i + 1]))]

    def sequence(self, i: int) -> str:
        """Sequence ``i`` as letters (an unknown residue as ``X``)."""
        return _LETTERS[self.tokens[self.offsets[i] : self.offsets[i + 1]]].tobytes().decode("ascii")

    def subset(self, rows: Sequence[int] | np.ndarray) -> SequenceSet:
        rows = np.asarray(rows, np.int64)
        lengths = self.lengths()[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        parts = [self.tokens[self.offsets[r] : self.offsets[r + 1]] for r in rows]
        tokens = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        return SequenceSet([self.ids[r] for r in rows], tokens, offsets)

    @classmethod
    def from_strings(cls, ids: Sequence[str], seqs: Sequence[str]) -> SequenceSet:
        from hypalign.encoders.protein import _LUT

        lengths = np.array([len(s) for s in seqs], np.int64)
        joined = "".join(seqs).encode("ascii", "replace")
        tokens = _LUT[np.frombuffer(joined, np.uint8)].astype(np.uint8)
        return cls(list(ids), tokens, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def save(self, path: Path) -> None:
        from hypalign.io import atomic_write

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a path without it
                np.savez(fh, ids=np.array(self.ids), tokens=self.tokens, offsets=self.offsets)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path) -> SequenceSet:
        with np.load(path) as z:
            return cls([str(s) for s in z["ids"]], z["tokens"], z["offsets"])


def window_ids(ss: SequenceSet, rows: Sequence[tuple[int, int]], max_len: int) -> Tensor:
    """``<cls> residues <eos>`` of each ``(sequence, start)`` window (``max_len − 2`` residues), padded."""
    from hypalign.encoders.protein import CLS, EOS, PAD

    keep = max_len - 2
    parts = [ss.window(int(i), int(s), keep) for i, s in rows]
    ids = np.full((len(parts), max(len(p) for p in parts) + 2), PAD, np.int64)
    for r, p in enumerate(parts):
        ids[r, 0], ids[r, 1 : 1 + len(p)], ids[r, 1 + len(p)] = CLS, p, EOS
    return torch.from_numpy(ids)


def swissprot_sequences(say: Callable[[str], None] | None = None) -> SequenceSet:
    """Every distinct Swiss-Prot accession of metastudent-data's three ontologies (BP first, then the MF and CC ones
    not in BP), cached under ``CACHE/protlm/swissprot.npz``."""
    from hypalign.data.protein import metastudent_proteins
    from hypalign.paths import cache_dir

    path = cache_dir() / "protlm" / "swissprot.npz"
    say = say or (lambda m: None)
    if path.is_file():
        try:
            return SequenceSet.load(path)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # a damaged cache: made again
            say(f"{path}: unreadable cache ({type(exc).__name__}); reading the sequences again")
    say("reading the Swiss-Prot sequences of metastudent-data (once; cached)")
    seen: dict[str, str] = {}
    for ont in ("BP", "MF", "CC"):
        t = metastudent_proteins(ont)
        for acc, seq in zip(t.accessions, t.sequences, strict=True):
            seen.setdefault(acc, seq)
    ss = SequenceSet.from_strings(list(seen), list(seen.values()))
    ss.save(path)
    return ss


def held_out_sequences(spec: str) -> tuple[list[str], list[str]]:
    """``(ids, sequences)`` of the valid and test proteins of ``spec``: a protein GO split (a built-in name or a
    directory, :func:`hypalign.data.splits.load_split`) or ``structures:NAME`` (a structure split: ``small``,
    ``full`` or a directory; the chains' sequences)."""
    if spec.startswith("structures:"):
        from hypalign.data.structures import load_structures, make_structure_split, read_split_ids, split_dir

        name = spec.split(":", 1)[1]
        d = split_dir(name) if name in ("small", "full") else Path(name)
        if not (d / "test.txt").is_file():
            if name not in ("small", "full"):
                raise InputError(f"--exclude {spec}: {d} is not a structure split directory")
            make_structure_split(name)
        ss = load_structures()
        row = {c: i for i, c in enumerate(ss.ids)}
        ids = [c for part in ("valid", "test") for c in read_split_ids(d, part)]
        return ids, [ss.sequence(row[c]) for c in ids]
    from hypalign.data.protein import metastudent_proteins
    from hypalign.data.splits import load_split

    split = load_split(spec)
    ids = list(dict.fromkeys(split.valid + split.test))
    seqs: dict[str, str] = {}
    for ont in ("BP", "MF", "CC"):
        t = metastudent_proteins(ont)
        want = set(ids) - set(seqs)
        seqs.update({a: s for a, s in zip(t.accessions, t.sequences, strict=True) if a in want})
    missing = [a for a in ids if a not in seqs]
    if missing:
        raise InputError(f"--exclude {spec}: protein {missing[0]} is not in metastudent-data")
    return ids, [seqs[a] for a in ids]


def exclude_held_out(pool: SequenceSet, specs: Sequence[str], identity: float = 30.0,
                     say: Callable[[str], None] | None = None, threads: int | None = None) -> np.ndarray:
    """Rows of ``pool`` to keep: not a held-out accession of any of ``specs`` (:func:`held_out_sequences`), no
    sequence identical to a held-out one, and no DIAMOND hit (``blastp --more-sensitive``, e-value ≤ 1e-3, all
    targets) at ≥ ``identity`` % to one. Cached under ``CACHE/protlm/exclude-<hash>.json`` keyed by the pool's ids,
    the held-out ids and the identity."""
    from hypalign.data.seqtools import diamond_blastp
    from hypalign.io import atomic_write_json
    from hypalign.paths import cache_dir

    say = say or (lambda m: None)
    if not specs:
        return np.arange(len(pool))
    held_ids, held_seqs = [], []
    for spec in specs:
        ids, seqs = held_out_sequences(spec)
        held_ids += ids
        held_seqs += seqs
    h = hashlib.sha256()
    for part in (pool.ids, sorted(set(held_ids)), [f"{identity:g}"]):
        h.update("\n".join(part).encode())
        h.update(b"\0")
    key = h.hexdigest()[:24]
    cache = cache_dir() / "protlm" / f"exclude-{key}.json"
    if cache.is_file():
        drop = set(json.loads(cache.read_text())["drop"])
    else:
        say(f"removing {len(held_ids)} held-out proteins ({', '.join(specs)}) and their homologs at ≥ {identity:g} % "
            f"identity from {len(pool)} sequences (DIAMOND; once, cached)")
        pool_seqs = [pool.sequence(i) for i in range(len(pool))]
        by_seq, by_id = set(held_seqs), set(held_ids)
        drop = {i for i, (a, s) in enumerate(zip(pool.ids, pool_seqs, strict=True)) if s in by_seq or a in by_id}
        qids = [f"q{i}" for i in range(len(held_ids))]
        rids = [f"r{i}" for i in range(len(pool))]
        hits = diamond_blastp(qids, held_seqs, rids, pool_seqs, evalue=1e-3, max_target_seqs=0, threads=threads)
        drop |= set(hits.target[hits.pident >= identity].tolist())
        atomic_write_json(cache, {"drop": sorted(int(i) for i in drop), "held_out": len(held_ids),
                                  "specs": list(specs), "identity": identity})
    keep = np.setdiff1d(np.arange(len(pool)), np.fromiter(drop, np.int64, len(drop)))
    say(f"{len(pool) - len(keep)} sequences removed as held-out or homologous to held-out; {len(keep)} kept")
    return keep


def read_sequence_file(path: Path, skip_invalid: bool = False) -> SequenceSet:
    """A user's FASTA (:func:`hypalign.data.protein.read_fasta`: non-amino-acid letters are a one-line error naming
    the line, or skipped and counted with ``skip_invalid``)."""
    from hypalign.data.protein import read_fasta

    if not Path(path).is_file():
        raise InputError(f"{path}: not found (expected a FASTA file)")
    ids, seqs = read_fasta(path, skip_invalid=skip_invalid)
    if not ids:
        raise InputError(f"{path}: no sequences")
    return SequenceSet.from_strings(ids, seqs)


__all__ = ["SequenceSet", "exclude_held_out", "held_out_sequences", "read_sequence_file", "swissprot_sequences",
           "window_ids"]
