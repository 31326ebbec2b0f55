"""Read protein BLAST databases (format version 4: ``.pin`` / ``.psq`` / ``.phr``) without BLAST.

Debian's ``metastudent-data`` ships Swiss-Prot (2014-01) this way, one database per GO ontology
(``BPO/``, ``MFO/``, ``CCO/goasp.fasta.*``), titles ``ACCESSION|GO:…,GO:…``.

Layout (NCBI's documented v4 format; integers big-endian unless said otherwise):

* ``.pin``: version (4), sequence type (1 = protein), title (length-prefixed), creation date
  (length-prefixed), number of sequences ``N``, total residues (**8 bytes little-endian**), longest
  sequence, then ``N + 1`` header offsets into ``.phr`` and ``N + 1`` sequence offsets into ``.psq``.
* ``.psq``: residues in NCBIstdaa codes (one byte each), sequences separated by a 0 byte;
  sequence ``i`` is ``psq[seq[i] : seq[i + 1] - 1]``.
* ``.phr``: for each sequence an ASN.1 BER ``Blast-def-line-set``; the first definition line's
  ``title`` is the first VisibleString (tag ``0x1A``) of the blob.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypalign.errors import InputError, MissingDataError

#: NCBIstdaa code -> residue letter (code 0 is the gap '-', 25 the stop '*').
NCBISTDAA = "-ABCDEFGHIKLMNPQRSTVWXYZU*OJ"
_DECODE = bytes(ord(NCBISTDAA[i]) if i < len(NCBISTDAA) else ord("?") for i in range(256))


@dataclass
class BlastDB:
    """An opened protein BLAST v4 database: ``len(db)`` sequences, ``db.title(i)``, ``db.sequence(i)``."""

    path: Path
    title_text: str
    n: int
    total_residues: int
    max_length: int
    header_offsets: np.ndarray
    sequence_offsets: np.ndarray

    def __len__(self) -> int:
        return self.n

    def _blob(self, suffix: str) -> bytes:
        with open(f"{self.path}.{suffix}", "rb") as fh:
            return fh.read()

    def title(self, i: int) -> str:
        """The title of sequence ``i`` (reads just its header)."""
        a, b = int(self.header_offsets[i]), int(self.header_offsets[i + 1])
        with open(f"{self.path}.phr", "rb") as fh:
            fh.seek(a)
            blob = fh.read(b - a)
        return _first_visible_string(blob, 0, len(blob), i, self.path)

    def sequence(self, i: int) -> str:
        """Sequence ``i`` as one-letter codes (reads just its residues)."""
        a, b = int(self.sequence_offsets[i]), int(self.sequence_offsets[i + 1]) - 1
        with open(f"{self.path}.psq", "rb") as fh:
            fh.seek(a)
            return fh.read(b - a).translate(_DECODE).decode("ascii")

    def titles(self) -> list[str]:
        """Every sequence's title (the first definition line), in database order."""
        phr = self._blob("phr")
        out = []
        for i in range(self.n):
            out.append(_first_visible_string(phr, int(self.header_offsets[i]), int(self.header_offsets[i + 1]), i,
                                             self.path))
        return out

    def sequences(self) -> list[str]:
        """Every sequence as a one-letter string (decoded in one pass over ``.psq``)."""
        text = self._blob("psq").translate(_DECODE).decode("ascii")
        s = self.sequence_offsets
        return [text[s[i] : s[i + 1] - 1] for i in range(self.n)]

    def lengths(self) -> np.ndarray:
        return (np.diff(self.sequence_offsets.astype(np.int64)) - 1).astype(np.int64)


def open_blastdb(prefix: str | os.PathLike[str]) -> BlastDB:
    """Open ``prefix.pin`` (+ ``.psq``, ``.phr``); :class:`InputError` naming the file on anything unexpected."""
    prefix = Path(prefix)
    pin = Path(f"{prefix}.pin")
    for suffix in ("pin", "psq", "phr"):
        if not Path(f"{prefix}.{suffix}").is_file():
            raise MissingDataError(f"{prefix}.{suffix}: not found (a protein BLAST database needs .pin, .psq, .phr)")
    b = pin.read_bytes()
    try:
        version, seqtype, tlen = struct.unpack(">iii", b[:12])
        if version != 4:
            raise InputError(f"{pin}: BLAST database format version {version}; this reader reads version 4")
        if seqtype != 1:
            raise InputError(f"{pin}: a nucleotide database (type {seqtype}); expected protein (1)")
        p = 12
        title = b[p : p + tlen].decode("latin-1")
        p += tlen
        (dlen,) = struct.unpack(">i", b[p : p + 4])
        p += 4 + dlen
        (n,) = struct.unpack(">i", b[p : p + 4])
        p += 4
        (total,) = struct.unpack("<q", b[p : p + 8])
        p += 8
        (maxlen,) = struct.unpack(">i", b[p : p + 4])
        p += 4
        hdr = np.frombuffer(b, dtype=">u4", count=n + 1, offset=p).astype(np.int64)
        p += 4 * (n + 1)
        seq = np.frombuffer(b, dtype=">u4", count=n + 1, offset=p).astype(np.int64)
    except (struct.error, ValueError) as exc:
        raise InputError(f"{pin}: truncated or not a BLAST v4 index ({exc})") from None
    psq_size = Path(f"{prefix}.psq").stat().st_size
    if seq[-1] > psq_size or hdr[-1] > Path(f"{prefix}.phr").stat().st_size or (np.diff(seq) < 1).any():
        raise InputError(f"{pin}: offsets do not fit {prefix}.psq / .phr (a damaged database?)")
    return BlastDB(prefix, title, n, total, maxlen, hdr, seq)


def _first_visible_string(blob: bytes, start: int, stop: int, i: int, path: Path) -> str:
    j = blob.find(b"\x1a", start, stop)
    if j < 0 or j + 1 >= stop:
        raise InputError(f"{path}.phr: header of sequence {i} has no title")
    length = blob[j + 1]
    k = j + 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        nbytes = length & 0x7F
        length = int.from_bytes(blob[k : k + nbytes], "big")
        k += nbytes
    if k + length > stop:
        raise InputError(f"{path}.phr: header of sequence {i} is cut short")
    return blob[k : k + length].decode("latin-1")


def write_blastdb(prefix: str | os.PathLike[str], titles: list[str], sequences: list[str], title: str = "db") -> None:
    """Write a minimal protein BLAST v4 database (what :func:`open_blastdb` reads; for tests and exports).

    Headers are a minimal BER ``Blast-def-line-set`` holding the title as a VisibleString.
    """
    enc = {c: i for i, c in enumerate(NCBISTDAA)}
    psq = bytearray(b"\x00")
    seq_off = [1]
    phr = bytearray()
    hdr_off = [0]
    for t, s in zip(titles, sequences, strict=True):
        try:
            psq += bytes(enc[c] for c in s.upper())
        except KeyError as exc:
            raise InputError(f"sequence {t!r}: letter {exc.args[0]!r} is not an NCBIstdaa residue") from None
        psq += b"\x00"
        seq_off.append(len(psq))
        raw = t.encode("latin-1")
        length = bytes([len(raw)]) if len(raw) < 128 else bytes([0x82]) + len(raw).to_bytes(2, "big")
        phr += b"0\x800\x80\xa0\x80\x1a" + length + raw + b"\x00\x00\x00\x00\x00\x00"
        hdr_off.append(len(phr))
    date = b"Jan  1, 2026  0:00 AM"
    tb = title.encode()
    pin = struct.pack(">iii", 4, 1, len(tb)) + tb + struct.pack(">i", len(date)) + date
    pin += struct.pack(">i", len(titles)) + struct.pack("<q", sum(len(s) for s in sequences))
    pin += struct.pack(">i", max((len(s) for s in sequences), default=0))
    pin += np.asarray(hdr_off, dtype=">u4").tobytes() + np.asarray(seq_off, dtype=">u4").tobytes()
    Path(f"{prefix}.pin").write_bytes(pin)
    Path(f"{prefix}.psq").write_bytes(bytes(psq))
    Path(f"{prefix}.phr").write_bytes(bytes(phr))
