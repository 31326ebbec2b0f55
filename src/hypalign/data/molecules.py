"""Molecules from SMILES: graphs for a GNN, fingerprints, Bemis–Murcko scaffolds and scaffold splits, and the
property tables users bring (InfoAlign, spec §4; needs the ``chem`` extra: RDKit and torch-geometric).

* :func:`parse_smiles`: RDKit molecules, an unparsable SMILES an error naming its source and line (or, with
  ``skip_invalid``, dropped and counted).
* :func:`mol_graphs` / :func:`mol_graph`: torch-geometric's molecule graphs (``from_rdmol``) — 9 integer atom
  features (atomic number, chirality, degree, formal charge, hydrogens, radical electrons, hybridisation, aromatic,
  in ring) and 3 bond features (type, stereo, conjugated), both directions of every bond — the OGB layout
  InfoAlign's GIN embeds, from molecules RDKit has parsed once (``from_smiles`` would turn an unparsable SMILES into
  an empty graph silently).
* :func:`morgan_fingerprints`: ``(n, bits)`` uint8 Morgan (ECFP) bit vectors — radius 2 / 1024 bits is ECFP4
  (the baselines, the Tanimoto edges), InfoAlign's fingerprint decoder target is radius 4 / 1024 bits.
* :func:`tanimoto`: Jaccard similarity of bit vectors.
* :func:`murcko_scaffold`, :func:`scaffold_split`: Bemis–Murcko scaffold groups dealt whole to train / valid /
  test in a seeded order (InfoAlign: 0.6 / 0.15 / 0.25, groups shuffled, then filling train, valid, test).
* :func:`read_property_table`: a CSV/TSV with a ``smiles`` column and label columns (numbers; empty = missing).
* :func:`read_smiles_file`: molecules to embed — a CSV/TSV with a ``smiles`` column, or a ``.smi`` file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.errors import InputError

#: RDKit's own parse messages go to stderr through its logger; parse errors are reported here instead
_RDLOG_OFF = "rdApp.*"


def _chem() -> Any:
    try:
        from rdkit import Chem, RDLogger
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError("molecules need RDKit: pip install 'hypalign[chem]' (or rdkit)") from e
    RDLogger.DisableLog(_RDLOG_OFF)
    return Chem


def parse_smiles(smiles: Sequence[str], source: str = "SMILES", skip_invalid: bool = False,
                 lines: Sequence[int] | None = None) -> tuple[list[Any], np.ndarray]:
    """``(RDKit molecules, kept)``: ``kept`` the positions of the SMILES that parsed. An empty or unparsable one is
    an :class:`InputError` naming ``source`` and its line (``lines[i]``, default ``i + 1``), or with
    ``skip_invalid`` dropped (the caller reports the count: ``len(smiles) - len(kept)``)."""
    chem = _chem()
    mols, kept = [], []
    for i, s in enumerate(smiles):
        m = chem.MolFromSmiles(s) if isinstance(s, str) and s.strip() else None
        if m is None or m.GetNumAtoms() == 0:
            if not skip_invalid:
                line = int(lines[i]) if lines is not None else i + 1
                raise InputError(f"{source}: line {line}: unparsable SMILES {str(s)[:60]!r} "
                                 "(use --skip-invalid to drop such rows)")
            continue
        mols.append(m)
        kept.append(i)
    return mols, np.asarray(kept, dtype=np.int64)


def mol_graphs(mols: Sequence[Any]) -> list[Any]:
    """``torch_geometric.data.Data`` graphs of parsed RDKit molecules (torch-geometric's ``from_rdmol``: ``x``
    ``(atoms, 9)``, ``edge_index`` ``(2, 2·bonds)``, ``edge_attr`` ``(2·bonds, 3)``, int64) — no second parse."""
    from torch_geometric.utils import from_rdmol

    return [from_rdmol(m) for m in mols]


def mol_graph(smiles: str) -> Any:
    """The graph of one SMILES (:func:`mol_graphs`), parsed once by RDKit (an error naming it when it does not
    parse: torch-geometric's ``from_smiles`` would return an empty graph) and carrying ``smiles``."""
    mols, _ = parse_smiles([smiles])
    g = mol_graphs(mols)[0]
    g.smiles = smiles
    return g


def morgan_fingerprints(mols: Sequence[Any], radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """``(len(mols), n_bits)`` uint8 Morgan bit vectors of RDKit molecules (``radius`` 2: ECFP4)."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(mols), n_bits), dtype=np.uint8)
    for i, m in enumerate(mols):
        out[i] = gen.GetFingerprintAsNumPy(m)
    return out


def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` Tanimoto (Jaccard) similarity of 0/1 fingerprints: ``|a ∧ b| / |a ∨ b|`` (1 for two
    empty fingerprints)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 1.0).astype(np.float32)


def murcko_scaffold(mol: Any) -> str:
    """The Bemis–Murcko scaffold (ring systems and the linkers between them) as canonical SMILES; ``""`` for an
    acyclic molecule."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return str(MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False))


def scaffold_split(mols: Sequence[Any], fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
                   seed: int = 3) -> dict[str, np.ndarray]:
    """Positions per part, no scaffold in two parts: the molecules grouped by :func:`murcko_scaffold`, the groups
    in a seeded random order (InfoAlign's protocol; seed 3 as its code), each group put in train while train is
    under its share, then valid, then test — except that groups larger than half the test share go first
    (chemprop's *balanced* scaffold split): a big group (the acyclic molecules, one ring system shared by a series)
    lands in train instead of making up most of a held-out part."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise InputError(f"scaffold split fractions {fractions}: three non-negative shares summing to 1")
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(mols):
        groups.setdefault(murcko_scaffold(m), []).append(i)
    keys = sorted(groups)
    n = len(mols)
    perm = np.random.default_rng(seed).permutation(len(keys))
    big = [k for k in perm.tolist() if len(groups[keys[k]]) > fractions[2] * n / 2]
    order = np.array(big + [k for k in perm.tolist() if len(groups[keys[k]]) <= fractions[2] * n / 2], dtype=np.int64)
    cap = {"train": fractions[0] * n, "valid": (fractions[0] + fractions[1]) * n}
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for k in order.tolist():
        g = groups[keys[k]]
        done = len(parts["train"]) + len(parts["valid"])
        if len(parts["train"]) + len(g) <= cap["train"]:
            parts["train"] += g
        elif done + len(g) <= cap["valid"]:
            parts["valid"] += g
        else:
            parts["test"] += g
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()}


def random_split(n: int, fractions: tuple[float, float, float] = (0.6, 0.15, 0.25), seed: int = 0,
                 ) -> dict[str, np.ndarray]:
    """Positions per part of a seeded permutation cut at the fractions."""
    order = np.random.default_rng(seed).permutation(n)
    a, b = round(fractions[0] * n), round((fractions[0] + fractions[1]) * n)
    return {"train": np.sort(order[:a]), "valid": np.sort(order[a:b]), "test": np.sort(order[b:])}


@dataclass
class PropertyTable:
    """Molecules with labels: ``smiles[i]``, ``mols[i]`` (RDKit), ``labels[i, j]`` (float32, NaN = missing) of
    ``columns[j]``; ``lines[i]`` the file line each came from; ``skipped`` unparsable rows dropped."""

    smiles: list[str]
    mols: list[Any]
    labels: np.ndarray
    columns: list[str]
    lines: np.ndarray
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.smiles)


def read_property_table(path: str | os.PathLike[str], targets: Sequence[str] | None = None,
                        smiles_column: str = "smiles", skip_invalid: bool = False) -> PropertyTable:
    """A CSV (or TSV: by extension) with a SMILES column and label columns. ``targets``: the label columns (default:
    every column but the SMILES one); values are numbers, empty or ``nan`` for missing. Errors name the file, line
    and column: a missing column, a label that is not a number, an unparsable SMILES (or ``skip_invalid``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    delim = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    with open(p, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=delim))
    if not rows:
        raise InputError(f"{p}: empty file")
    head = [h.strip() for h in rows[0]]
    lower = {h.lower(): i for i, h in enumerate(head)}
    if smiles_column.lower() not in lower:
        raise InputError(f"{p}: line 1: no {smiles_column!r} column (columns: {', '.join(head)})")
    si = lower[smiles_column.lower()]
    cols = list(targets) if targets else [h for i, h in enumerate(head) if i != si]
    missing = [c for c in cols if c not in head]
    if missing:
        raise InputError(f"{p}: line 1: no column {missing[0]!r} (columns: {', '.join(head)})")
    if not cols:
        raise InputError(f"{p}: no label column besides {head[si]!r}")
    ci = [head.index(c) for c in cols]
    body = [(n + 2, r) for n, r in enumerate(rows[1:]) if any(x.strip() for x in r)]
    if not body:
        raise InputError(f"{p}: no rows after the header")
    labels = np.full((len(body), len(cols)), np.nan, dtype=np.float32)
    for k, (line, r) in enumerate(body):
        if len(r) != len(head):
            raise InputError(f"{p}: line {line}: {len(r)} fields, the header has {len(head)}")
        for j, c in enumerate(ci):
            v = r[c].strip()
            if v and v.lower() not in ("nan", "na"):
                try:
                    labels[k, j] = float(v)
                except ValueError:
                    raise InputError(f"{p}: line {line}: column {cols[j]!r}: {v[:30]!r} is not a number") from None
                if not np.isfinite(labels[k, j]):
                    raise InputError(f"{p}: line {line}: column {cols[j]!r}: {v!r} is not a finite number")
    smiles = [r[si].strip() for _, r in body]
    lines = np.array([line for line, _ in body], dtype=np.int64)
    mols, kept = parse_smiles(smiles, str(p), skip_invalid, lines=lines.tolist())
    return PropertyTable([smiles[i] for i in kept], mols, labels[kept], cols, lines[kept],
                         skipped=len(body) - len(kept))


def read_smiles_file(path: str | os.PathLike[str]) -> tuple[list[str], list[str], list[int]]:
    """``(ids, SMILES, lines)`` of a file of molecules: a ``.csv`` / ``.tsv`` with a ``smiles`` column (ids from an
    ``id`` or ``name`` column when there is one, else the line number), or one molecule per line (``.smi``: the
    SMILES, then optionally whitespace and an id; ``#`` comments). SMILES are not parsed here
    (:func:`parse_smiles` names the line of a bad one)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    ids: list[str] = []
    smiles: list[str] = []
    lines: list[int] = []
    if p.suffix.lower() in (".csv", ".tsv", ".tab"):
        delim = "\t" if p.suffix.lower() != ".csv" else ","
        with open(p, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter=delim))
        head = [h.strip().lower() for h in rows[0]] if rows else []
        if "smiles" not in head:
            raise InputError(f"{p}: line 1: no 'smiles' column (columns: {', '.join(head)})")
        si = head.index("smiles")
        ii = next((head.index(k) for k in ("id", "name") if k in head), None)
        for n, r in enumerate(rows[1:], 2):
            if not any(x.strip() for x in r):
                continue
            if len(r) <= si:
                raise InputError(f"{p}: line {n}: no value in the smiles column")
            smiles.append(r[si].strip())
            ids.append(r[ii].strip() if ii is not None and ii < len(r) else str(n))
            lines.append(n)
    else:
        with open(p, encoding="utf-8") as fh:
            for n, raw in enumerate(fh, 1):
                f = raw.split()
                if not f or f[0].startswith("#"):
                    continue
                smiles.append(f[0])
                ids.append(f[1] if len(f) > 1 else str(n))
                lines.append(n)
    if not smiles:
        raise InputError(f"{p}: no molecules")
    return ids, smiles, lines
