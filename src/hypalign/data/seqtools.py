"""Thin wrappers around the sequence tools a biologist already uses (Debian packages).

* :func:`mmseqs_cluster` — MMseqs2 ``easy-cluster`` (Steinegger & Söding 2017): greedy set-cover
  clusters at a minimum sequence identity and alignment coverage; used for homology-aware splits.
* :func:`diamond_blastp` — DIAMOND ``blastp`` (Buchfink et al. 2021): local alignments of queries
  against a reference set; used to check splits and as the nearest-neighbour transfer baseline.

Both run in a temporary directory, take ``threads`` (default: all cores), and raise a
:class:`~hypalign.errors.MissingDataError` naming the Debian package when the tool is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypalign.errors import InputError, MissingDataError

TOOLS = {"mmseqs": "mmseqs2", "diamond": "diamond-aligner"}


def tool_path(name: str) -> str:
    """Absolute path of ``mmseqs`` or ``diamond``; a clear error naming the package if missing."""
    path = shutil.which(name)
    if path is None:
        raise MissingDataError(
            f"`{name}` is not installed; run `bash scripts/setup.sh --data` or `apt-get install {TOOLS[name]}`"
        )
    return path


def tool_version(name: str) -> str:
    args = [tool_path(name), "version"]
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip().splitlines()[0]


def write_fasta(path: str | os.PathLike[str], ids: Sequence[str], seqs: Sequence[str]) -> None:
    if len(ids) != len(seqs):
        raise ValueError(f"{len(ids)} ids for {len(seqs)} sequences")
    with open(path, "w", encoding="ascii") as fh:
        for i, s in zip(ids, seqs, strict=True):
            fh.write(f">{i}\n{s}\n")


def _run(args: list[str], what: str) -> None:
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {' | '.join(tail)}")


def _threads(threads: int | None) -> int:
    return int(threads or os.cpu_count() or 1)


def mmseqs_cluster(
    ids: Sequence[str], seqs: Sequence[str], min_seq_id: float = 0.3, coverage: float = 0.5,
    sensitivity: float = 7.5, threads: int | None = None,
) -> np.ndarray:
    """Cluster label (0..k-1, numbered by first appearance) of every sequence.

    ``mmseqs easy-cluster --min-seq-id {min_seq_id} -c {coverage} --cov-mode 0 -s {sensitivity}``:
    a member has at least ``min_seq_id`` identity to its representative over an alignment covering
    at least ``coverage`` of both sequences.
    """
    if len(set(ids)) != len(ids):
        raise InputError("mmseqs_cluster: sequence ids must be unique")
    with tempfile.TemporaryDirectory(prefix="hypalign-mmseqs-") as d:
        fasta = Path(d) / "in.fasta"
        write_fasta(fasta, ids, seqs)
        _run([tool_path("mmseqs"), "easy-cluster", str(fasta), str(Path(d) / "out"), str(Path(d) / "tmp"),
              "--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0", "-s", str(sensitivity),
              "--threads", str(_threads(threads)), "-v", "1"], "mmseqs easy-cluster")
        rep_of: dict[str, str] = {}
        with open(Path(d) / "out_cluster.tsv", encoding="ascii") as fh:
            for line in fh:
                rep, member = line.rstrip("\n").split("\t")
                rep_of[member] = rep
    missing = [i for i in ids if i not in rep_of]
    if missing:
        raise RuntimeError(f"mmseqs easy-cluster left {len(missing)} sequences unassigned (e.g. {missing[0]})")
    label: dict[str, int] = {}
    return np.array([label.setdefault(rep_of[i], len(label)) for i in ids], dtype=np.int64)


@dataclass
class Hits:
    """DIAMOND hits as parallel arrays (indices into the query and reference lists)."""

    query: np.ndarray
    target: np.ndarray
    pident: np.ndarray  # percent identity over the alignment
    length: np.ndarray  # alignment length
    qlen: np.ndarray
    slen: np.ndarray
    evalue: np.ndarray
    bitscore: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    def mask(self, keep: np.ndarray) -> Hits:
        return Hits(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    @property
    def shorter_coverage(self) -> np.ndarray:
        """Alignment length over the shorter sequence's length."""
        return self.length / np.minimum(self.qlen, self.slen)


def diamond_blastp(
    query_ids: Sequence[str], query_seqs: Sequence[str], ref_ids: Sequence[str], ref_seqs: Sequence[str],
    sensitivity: str = "more-sensitive", evalue: float = 1e-3, max_target_seqs: int = 25, threads: int | None = None,
) -> Hits:
    """DIAMOND ``blastp`` of the queries against the reference set (``--{sensitivity}``, e-value cut-off,
    at most ``max_target_seqs`` targets per query; 0 = all)."""
    if sensitivity not in ("fast", "mid-sensitive", "sensitive", "more-sensitive", "very-sensitive",
                           "ultra-sensitive", "default"):
        raise InputError(f"unknown DIAMOND sensitivity {sensitivity!r}")
    qpos = {q: i for i, q in enumerate(query_ids)}
    rpos = {r: i for i, r in enumerate(ref_ids)}
    if len(qpos) != len(query_ids) or len(rpos) != len(ref_ids):
        raise InputError("diamond_blastp: sequence ids must be unique within the queries and within the reference")
    cols = ["qseqid", "sseqid", "pident", "length", "qlen", "slen", "evalue", "bitscore"]
    with tempfile.TemporaryDirectory(prefix="hypalign-diamond-") as d:
        dd = Path(d)
        write_fasta(dd / "ref.fasta", ref_ids, ref_seqs)
        write_fasta(dd / "q.fasta", query_ids, query_seqs)
        t = str(_threads(threads))
        _run([tool_path("diamond"), "makedb", "--in", str(dd / "ref.fasta"), "-d", str(dd / "ref"), "-p", t,
              "--quiet"], "diamond makedb")
        args = [tool_path("diamond"), "blastp", "-d", str(dd / "ref"), "-q", str(dd / "q.fasta"),
                "-o", str(dd / "hits.tsv"), "-e", str(evalue), "-k", str(max_target_seqs), "-p", t, "--quiet",
                "--outfmt", "6", *cols]
        if sensitivity != "default":
            args.append(f"--{sensitivity}")
        _run(args, "diamond blastp")
        rows = [line.rstrip("\n").split("\t") for line in open(dd / "hits.tsv", encoding="ascii")]
    if not rows:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return Hits(empty_i, empty_i, empty_f, empty_i, empty_i, empty_i, empty_f, empty_f)
    a = list(zip(*rows, strict=True))
    return Hits(
        query=np.array([qpos[x] for x in a[0]], np.int64), target=np.array([rpos[x] for x in a[1]], np.int64),
        pident=np.array(a[2], np.float64), length=np.array(a[3], np.int64), qlen=np.array(a[4], np.int64),
        slen=np.array(a[5], np.int64), evalue=np.array(a[6], np.float64), bitscore=np.array(a[7], np.float64),
    )


def homolog_lists(
    ids: Sequence[str], seqs: Sequence[str], evalue: float = 1e-3, max_target_seqs: int = 25,
    threads: int | None = None, cache: bool = True, say: object = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each sequence's homologs within the set: DIAMOND ``blastp --more-sensitive`` all against all
    (e-value <= ``evalue``, up to ``max_target_seqs`` hits besides itself), self-hits removed.

    Returns CSR-style ``(indptr, targets, pident)``: the homologs of sequence ``i`` are
    ``targets[indptr[i]:indptr[i + 1]]`` (positions in ``ids``), best bitscore first, ``pident`` the percent
    identity of each pair's best hit. Cached under
    ``$HYPALIGN_CACHE_DIR/homologs/`` by a hash of the ids, sequences and settings (20k proteins: ~2.5 min
    on 2 cores the first time)."""
    import hashlib

    from hypalign.io import atomic_write
    from hypalign.paths import cache_dir

    h = hashlib.sha256(f"v2|{evalue}|{max_target_seqs}|".encode())  # v2: the cache holds identities too
    for i, s in zip(ids, seqs, strict=True):
        h.update(f"{i}\t{s}\n".encode())
    path = cache_dir() / "homologs" / f"{h.hexdigest()[:24]}.npz"
    if cache and path.is_file():
        with np.load(path) as z:
            return z["indptr"], z["targets"], z["pident"]
    if callable(say):
        say(f"finding homologs among {len(ids)} sequences (DIAMOND all against all; cached afterwards)")
    hits = diamond_blastp(ids, seqs, ids, seqs, evalue=evalue, max_target_seqs=max_target_seqs + 1, threads=threads)
    hits = hits.mask(hits.query != hits.target)
    order = np.lexsort((-hits.bitscore, hits.query))  # by query, best first
    q, t, pid = hits.query[order], hits.target[order], hits.pident[order]
    first_of_pair = np.unique(q * len(ids) + t, return_index=True)[1]  # a pair's best hit (HSPs repeat pairs)
    keep = np.zeros(len(q), bool)
    keep[first_of_pair] = True
    q, t, pid = q[keep], t[keep], pid[keep]
    n = np.bincount(q, minlength=len(ids))
    rank = np.arange(len(q)) - np.r_[0, np.cumsum(n)[:-1]][q]  # position within its query's list
    within = rank < max_target_seqs
    q, t, pid = q[within], t[within].astype(np.int64), pid[within].astype(np.float32)
    indptr = np.r_[0, np.cumsum(np.bincount(q, minlength=len(ids)))].astype(np.int64)
    if cache:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, indptr=indptr, targets=t, pident=pid)

        atomic_write(path, write)
    return indptr, t, pid
