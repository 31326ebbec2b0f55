"""Proteins with GO annotations: Swiss-Prot from Debian's ``metastudent-data``, or a user's FASTA +
annotation table, with annotations propagated to GO ancestors (is_a, part_of).

* :func:`metastudent_proteins` reads ``<ONT>O/goasp.fasta`` (BLAST v4, :mod:`hypalign.data.blastdb`)
  for sequences and ``goasp_annot.dat`` (``ACCESSION<TAB>GO:…<TAB>GO:…``; repeated terms are
  repeated evidence) for annotations, and caches the tidy table as parquet
  (``$HYPALIGN_CACHE_DIR`` or ``~/.cache/hypalign``) so later runs load in seconds.
* :func:`read_fasta` / :func:`read_annotations`: the same for files a user brings (UniProt
  downloads), with errors naming the record or line, or — ``skip_invalid=True`` — bad records
  dropped and counted in one warning.
* :func:`propagate_terms`: every term plus its ancestors within the ontology.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypalign.errors import InputError
from hypalign.paths import cache_dir

ONTOLOGY_DIRS = {"BP": "BPO", "MF": "MFO", "CC": "CCO"}
AMINO_ACIDS = set("ACDEFGHIKLMNPQRSTVWYBZXUOJ")  # the 20 + ambiguity codes (B, Z, X, J) + U, O


@dataclass
class ProteinTable:
    """Parallel lists: ``accessions[i]``, ``sequences[i]``, ``terms[i]`` (sorted GO ids, as annotated)."""

    accessions: list[str]
    sequences: list[str]
    terms: list[list[str]]

    def __len__(self) -> int:
        return len(self.accessions)

    def subset(self, idx: Sequence[int] | np.ndarray) -> ProteinTable:
        return ProteinTable([self.accessions[i] for i in idx], [self.sequences[i] for i in idx],
                            [self.terms[i] for i in idx])




def read_annotation_dat(path: Path) -> dict[str, list[str]]:
    """``ACCESSION<TAB>GO:…<TAB>…`` lines -> accession -> sorted distinct terms."""
    out: dict[str, list[str]] = {}
    with open(path, encoding="ascii") as fh:
        for lineno, line in enumerate(fh, 1):
            tok = line.split()
            if not tok:
                continue
            if len(tok) < 2 or not all(t.startswith("GO:") for t in tok[1:]):
                raise InputError(f"{path}: line {lineno}: expected 'ACCESSION<TAB>GO:…<TAB>GO:…'")
            out[tok[0]] = sorted(set(tok[1:]))
    return out


def metastudent_proteins(ontology: str, use_cache: bool = True) -> ProteinTable:
    """Swiss-Prot proteins annotated in one ontology (``BP``, ``MF``, ``CC``), from metastudent-data."""
    from hypalign.data.blastdb import open_blastdb
    from hypalign.paths import metastudent_dir

    ont = ontology.upper()
    if ont not in ONTOLOGY_DIRS:
        raise InputError(f"unknown ontology {ontology!r}; expected BP, MF or CC")
    cache = cache_dir() / "metastudent" / f"{ont}.parquet"
    if use_cache and cache.is_file():
        return _read_parquet(cache)
    d = metastudent_dir() / ONTOLOGY_DIRS[ont]
    db = open_blastdb(d / "goasp.fasta")
    titles, seqs = db.titles(), db.sequences()
    annot = read_annotation_dat(d / "goasp_annot.dat")
    accs, terms = [], []
    for i, t in enumerate(titles):
        acc = t.split("|", 1)[0]
        if acc not in annot:
            raise InputError(f"{d / 'goasp.fasta'}: sequence {i} ({acc}) has no line in goasp_annot.dat")
        accs.append(acc)
        terms.append(annot[acc])
    table = ProteinTable(accs, seqs, terms)
    if use_cache:
        _write_parquet(cache, table)
    return table


def _write_parquet(path: Path, table: ProteinTable) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hypalign.io import atomic_write

    t = pa.table({"accession": table.accessions, "sequence": table.sequences, "go_terms": table.terms})
    atomic_write(path, lambda p: pq.write_table(t, p))


def _read_parquet(path: Path) -> ProteinTable:
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    return ProteinTable(t.column("accession").to_pylist(), t.column("sequence").to_pylist(),
                        t.column("go_terms").to_pylist())


def propagate_terms(terms: Iterable[str], ancestors: dict[str, set[str]]) -> list[str]:
    """``terms`` plus all their ancestors (``ancestors[t]``; terms outside the map are kept alone)."""
    out: set[str] = set()
    for t in terms:
        out.add(t)
        out |= ancestors.get(t, set())
    return sorted(out)


def ancestor_map(ontology: str) -> dict[str, set[str]]:
    """GO id -> its ancestors (is_a + part_of) within the ontology (``BP``, ``MF``, ``CC``)."""
    from hypalign.data.go import go_hierarchy

    h = go_hierarchy(ontology)
    anc = h.ancestors()
    return {h.names[i]: {h.names[j] for j in a.tolist()} for i, a in enumerate(anc)}


def read_fasta(path: str | os.PathLike[str], skip_invalid: bool = False) -> tuple[list[str], list[str]]:
    """``(ids, sequences)`` from a FASTA file; the id is the header's first word, or the accession of a
    UniProt header (``sp|P12345|NAME_HUMAN …`` -> ``P12345``).

    Malformed files, empty sequences and letters that are not amino acids are errors naming the
    record (or, with ``skip_invalid``, dropped and counted in one warning).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    ids: list[str] = []
    seqs: list[str] = []
    dropped: dict[str, int] = {}
    cur_id: str | None = None
    cur_line = 0
    parts: list[str] = []

    def flush() -> None:
        if cur_id is None:
            return
        seq = "".join(parts).replace(" ", "").upper().rstrip("*")
        problem = None
        if not seq:
            problem = "empty sequence"
        else:
            bad = sorted(set(seq) - AMINO_ACIDS)
            if bad:
                problem = f"letters that are not amino acids: {''.join(bad)!r}"
        if problem:
            if not skip_invalid:
                raise InputError(f"{p}: record {cur_id!r} (line {cur_line}): {problem}")
            dropped[problem.split(":")[0]] = dropped.get(problem.split(":")[0], 0) + 1
            return
        ids.append(cur_id)
        seqs.append(seq)

    with open(p, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith(">"):
                flush()
                head = line[1:].split()
                if not head:
                    raise InputError(f"{p}: line {lineno}: a '>' header without an id")
                word = head[0]
                bits = word.split("|")
                cur_id = bits[1] if len(bits) >= 3 and bits[0] in ("sp", "tr") else word
                cur_line, parts = lineno, []
            else:
                if cur_id is None:
                    raise InputError(f"{p}: line {lineno}: sequence data before the first '>' header (not FASTA?)")
                parts.append(line)
    flush()
    if dropped:
        summary = ", ".join(f"{n} {k}" for k, n in dropped.items())
        warnings.warn(f"{p}: skipped {sum(dropped.values())} records ({summary})", stacklevel=2)
    if not ids:
        raise InputError(f"{p}: no usable sequences")
    return ids, seqs


def read_annotations(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """A user's annotation table: ``ID<TAB>GO:…[,; or TAB separated]`` per line (``#`` comments allowed)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    out: dict[str, list[str]] = {}
    with open(p, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            tok = [t for t in line.replace(",", "\t").replace(";", "\t").split("\t") if t.strip()]
            terms = [t.strip() for t in tok[1:]]
            if len(tok) < 2 or not all(t.startswith("GO:") and len(t) == 10 for t in terms):
                raise InputError(f"{p}: line {lineno}: expected 'ID<TAB>GO:0000001[,GO:…]', got {line[:80]!r}")
            out.setdefault(tok[0].strip(), [])
            out[tok[0].strip()] = sorted(set(out[tok[0].strip()]) | set(terms))
    return out


ONTOLOGIES = ("BP", "MF", "CC")


@dataclass
class GODataset:
    """Proteins with their GO terms per ontology: ``terms[ont][i]`` (as annotated, unpropagated; may
    be empty for an ontology the protein has no annotation in)."""

    accessions: list[str]
    sequences: list[str]
    terms: dict[str, list[list[str]]]
    #: UniProt protein-existence level per protein (``PE=1..5`` of UniProt FASTA headers), when known
    existence: list[int] | None = None
    #: whether each protein has a recommended name (a UniProt header's description), when known
    named: list[bool] | None = None

    def __post_init__(self) -> None:
        self.position = {a: i for i, a in enumerate(self.accessions)}

    def __len__(self) -> int:
        return len(self.accessions)

    def subset(self, idx: Sequence[int] | np.ndarray) -> GODataset:
        return GODataset([self.accessions[i] for i in idx], [self.sequences[i] for i in idx],
                         {o: [t[i] for i in idx] for o, t in self.terms.items()},
                         None if self.existence is None else [self.existence[i] for i in idx],
                         None if self.named is None else [self.named[i] for i in idx])

    def indices(self, accessions: Sequence[str], source: str = "split") -> np.ndarray:
        """Positions of ``accessions``; an unknown one is an error naming ``source`` and its line."""
        out = np.empty(len(accessions), dtype=np.int64)
        for k, a in enumerate(accessions):
            i = self.position.get(a)
            if i is None:
                raise InputError(f"{source}: line {k + 1}: accession {a!r} is not in the data set")
            out[k] = i
        return out


def metastudent_go_dataset(require_all: bool = True) -> GODataset:
    """Swiss-Prot (2014-01) from metastudent-data with BP, MF and CC terms.

    ``require_all=True`` (the ProtCLIP splits' pool): only the 335,262 proteins annotated in all three
    ontologies, so every protein has a full "FUNCTION; PROCESS; LOCATION" description and every test
    protein counts in all three evaluations. Otherwise the union (516,371 proteins).
    """
    tables = {o: metastudent_proteins(o) for o in ONTOLOGIES}
    seq: dict[str, str] = {}
    for t in tables.values():
        for a, s in zip(t.accessions, t.sequences, strict=True):
            seq.setdefault(a, s)
    per = {o: dict(zip(t.accessions, t.terms, strict=True)) for o, t in tables.items()}
    if require_all:
        accs = [a for a in tables["BP"].accessions if a in per["MF"] and a in per["CC"]]
    else:
        accs = sorted(seq)
    return GODataset(accs, [seq[a] for a in accs], {o: [per[o].get(a, []) for a in accs] for o in ONTOLOGIES})


def user_go_dataset(fasta: str | os.PathLike[str], annotations: str | os.PathLike[str],
                    skip_invalid: bool = False) -> GODataset:
    """A user's FASTA + annotation table (:func:`read_fasta`, :func:`read_annotations`); terms are
    sorted into BP/MF/CC by the GO graph of metastudent-data; terms it does not know are dropped and
    counted in a warning. Proteins without annotations keep empty term lists."""
    from hypalign.data.go import Ontology

    ids, seqs = read_fasta(fasta, skip_invalid=skip_invalid)
    heads = read_uniprot_headers(fasta)
    existence = [heads[i][1] for i in ids] if all(heads.get(i, ("", None))[1] for i in ids) else None
    named = [bool(heads.get(i, ("", None))[0]) for i in ids]
    ann = read_annotations(annotations)
    onts = {o: Ontology(o) for o in ONTOLOGIES}
    unknown: set[str] = set()
    terms: dict[str, list[list[str]]] = {o: [] for o in ONTOLOGIES}
    for i in ids:
        mine = ann.get(i, [])
        for o in ONTOLOGIES:
            terms[o].append([t for t in mine if t in onts[o].index])
        unknown.update(t for t in mine if not any(t in onts[o].index for o in ONTOLOGIES))
    if unknown:
        warnings.warn(f"{annotations}: {len(unknown)} GO ids are not in the GO graph (obsolete or newer than "
                      f"2014-01) and were dropped, e.g. {sorted(unknown)[0]}", stacklevel=2)
    missing = [a for a in ann if a not in set(ids)]
    if missing:
        warnings.warn(f"{annotations}: {len(missing)} annotated ids have no sequence in {fasta} "
                      f"(e.g. {missing[0]})", stacklevel=2)
    return GODataset(ids, seqs, terms, existence, named)


def read_uniprot_headers(path: str | os.PathLike[str]) -> dict[str, tuple[str, int | None]]:
    """``{id: (protein name, PE level or None)}`` from UniProt FASTA headers
    (``>sp|P12345|NAME_HUMAN Protein name OS=… OX=… GN=… PE=1 SV=1``); other headers give ``("", None)``."""
    import re

    out: dict[str, tuple[str, int | None]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith(">"):
                continue
            head = line[1:].strip()
            word, _, rest = head.partition(" ")
            bits = word.split("|")
            if len(bits) >= 3 and bits[0] in ("sp", "tr"):
                pe = re.search(r"\bPE=([1-5])\b", rest)
                name = re.split(r"(?:^|\s)(?:OS|OX|GN|PE|SV)=", rest, maxsplit=1)[0].strip()
                out[bits[1]] = (name, int(pe.group(1)) if pe else None)
            elif word:
                out[word] = ("", None)
    return out


def property_keep_probability(count: np.ndarray, existence: np.ndarray, n: int = 4, a: float = 0.5,
                              b: float = 3.0, min_count: int = 3, max_existence: int = 3) -> np.ndarray:
    """ProtCLIP's property-driven sampling (spec §3.3, ``sampling.py``): keep an entry with probability
    ``(c / n)^a / e^b`` — ``c`` present properties of ``n``, ``e`` the UniProt protein-existence level
    (1 protein evidence … 5 uncertain) — and never when ``c < min_count`` or ``e > max_existence``.
    Defaults are the paper's: ``sqrt(c/4) / e^3``."""
    c = np.asarray(count, dtype=np.float64)
    e = np.asarray(existence, dtype=np.float64)
    p = (c / n) ** a / e**b
    return np.where((c < min_count) | (e > max_existence), 0.0, p)


def property_driven_sample(data: GODataset, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """The subset of ``rows`` kept by :func:`property_keep_probability` (seeded, deterministic).

    Properties counted (ProtCLIP: name, function, location, similarity; GO has no similarity section):
    a recommended name, MF ("function"), BP ("process") and CC ("location") annotations. ProtCLIP samples
    TrEMBL this way and keeps reviewed Swiss-Prot whole; a data set without existence levels (such as
    metastudent-data's Swiss-Prot) is therefore kept whole."""
    rows = np.asarray(rows)
    if data.existence is None:
        return rows
    named = data.named if data.named is not None else [True] * len(data)
    count = np.array([int(named[i]) + sum(bool(data.terms[o][i]) for o in data.terms) for i in rows.tolist()])
    e = np.array([data.existence[i] for i in rows.tolist()])
    keep = np.random.default_rng([seed, 7919]).random(len(rows)) < property_keep_probability(count, e)
    return rows[keep]


SECTION = {"MF": "FUNCTION", "BP": "PROCESS", "CC": "LOCATION"}


def describe_protein(terms: dict[str, list[str]], names: dict[str, str], max_terms: int | None = None) -> str:
    """The protein's text: ``"FUNCTION: a, b; PROCESS: c; LOCATION: d"`` from the names of its annotated
    (unpropagated) GO terms, sections in MF, BP, CC order, empty sections left out. ``max_terms`` caps
    each section (a tokenizer truncates anyway)."""
    parts = []
    for ont in ("MF", "BP", "CC"):
        ts = [names.get(t, t) for t in terms.get(ont, [])]
        if max_terms is not None:
            ts = ts[:max_terms]
        if ts:
            parts.append(f"{SECTION[ont]}: {', '.join(ts)}")
    return "; ".join(parts)
