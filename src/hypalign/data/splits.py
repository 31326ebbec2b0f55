"""Train/valid/test splits of a protein data set, deterministic and written as files.

A split is a directory holding ``train.txt``, ``valid.txt`` and ``test.txt`` (one accession per
line) and ``split.json`` (how it was made: kind, size, seed, counts, criteria, tool versions).
Any such directory can be passed wherever a split is expected (``--split DIR``); the built-in
names are made on first use from metastudent-data and cached under
``$HYPALIGN_CACHE_DIR/splits/NAME`` (or ``~/.cache/hypalign``):

* ``small-random``, ``full-random``: a seeded permutation of the pool.
* ``small-hard``, ``full-hard``: **no test (or valid) protein has >= 30 % sequence identity to any
  training protein**. The pool (``small``: a seeded sample of 30,000 proteins; ``full``: all of it)
  is clustered with MMseqs2 (``--min-seq-id 0.3 -c 0.5 --cov-mode 0 -s 4``), clusters are dealt to
  test, valid and train in a seeded order (so a family lies in one part only), and then every test
  and valid protein is searched against the training proteins with DIAMOND (``--more-sensitive``,
  e-value 1e-3): one with a hit of >= 30 % identity over >= 50 % of the shorter sequence is dropped.

* ``small-nohit``, ``full-nohit``: **no test (or valid) protein has any DIAMOND hit at all in train** (e-value
  <= 10, every hit read: ``--more-sensitive -e 10 -k 0``) — where homology transfer has nothing to give. Made
  like the hard splits (MMseqs2 clusters dealt whole, then the check), from every protein annotated in *any*
  ontology (516,371; each ontology is trained and evaluated on the proteins annotated in it); ``small``
  clusters a seeded sample of 40,000. The check keeps about half of the cluster-disjoint candidates (on
  small-hard's test proteins 43.5 % have a hit at e <= 10, 29 % at 1e-3), and it favours the proteins
  alignments miss: short, low-complexity or from families absent in train (``split.json`` records the
  lengths of each part).

Sizes: ``small`` = 20,000 train / 2,000 valid / 2,000 test; ``full-random`` = the whole pool with 5 %
valid and 5 % test. ``full-hard`` deals 10 % of the pool to test and to valid candidates each (twice
5 %), the rest (80 %) to train, and keeps every candidate that passes the DIAMOND check (up to 5 %
each; seed 0: 268,154 / 9,654 / 13,082, since 66 % of the candidates had a close training homolog that
MMseqs2 at ``-s 4`` had put in another cluster). The pool is
:func:`hypalign.data.protein.metastudent_go_dataset` (the 335,262 Swiss-Prot proteins annotated in BP,
MF and CC).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypalign.errors import InputError

PARTS = ("train", "valid", "test")
SMALL = {"train": 20_000, "valid": 2_000, "test": 2_000}
SMALL_HARD_POOL = 30_000
SMALL_NOHIT_POOL = 40_000
#: the no-hit check: any DIAMOND hit up to this e-value (every hit read) drops a held-out protein
NOHIT_EVALUE = 10.0
FULL_HOLDOUT = 0.05
HARD_IDENTITY = 30.0  # percent
HARD_COVERAGE = 0.5  # of the shorter sequence
#: MMseqs2 default sensitivity: 30k sequences cluster in ~1 min here (7.5: ~5 min); the DIAMOND check
#: afterwards enforces the identity criterion whatever clustering missed.
CLUSTER_SENSITIVITY = 4.0
BUILTIN = ("small-random", "small-hard", "full-random", "full-hard", "small-nohit", "full-nohit")
#: 2: the DIAMOND identity check looks at every hit of a held-out protein. Version 1 (before 2026-11-22)
#: looked at its 25 best only, and a close homolog ranked lower by bitscore slipped through: 9 of the 4,000
#: held-out proteins of small-hard v1, 78 of 2,000 sampled from full-hard v1's (3.9 %: a query against 268k
#: training proteins has many more than 25 hits). Cached hard splits of an older version are
#: remade on use (the old directory is kept beside them as ``NAME-v1``).
HARD_CHECK_VERSION = 2


@dataclass
class Split:
    """Accessions per part, and where they came from."""

    train: list[str]
    valid: list[str]
    test: list[str]
    path: Path | None = None
    info: dict | None = None

    def part(self, name: str) -> list[str]:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the three parts' accessions (order within a part ignored): runs record
        it, so that a run is never scored on another split that goes by the same name."""
        import hashlib

        h = hashlib.sha256()
        for name in PARTS:
            h.update(f"{name}\n".encode())
            h.update("\n".join(sorted(self.part(name))).encode())
        return h.hexdigest()[:16]


def split_dir(name: str) -> Path:
    from hypalign.paths import cache_dir

    return cache_dir() / "splits" / name


def load_split(spec: str | os.PathLike[str], seed: int = 0, build: bool = True) -> Split:
    """A split by name (``small-hard`` …; made and cached on first use when ``build``) or directory."""
    s = str(spec)
    if s in BUILTIN:
        d = split_dir(s if seed == 0 else f"{s}-seed{seed}")
        if (d / "test.txt").is_file() and s.endswith("-hard") and build:  # split.json alone says the version
            info_path = d / "split.json"
            info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
            version = info.get("check_version", 1)
            if version < HARD_CHECK_VERSION:
                keep = d.with_name(f"{d.name}-v{version}")
                _say(f"the cached split {s} ({d}) was made with the version {version} identity check, which looked "
                     f"at each held-out protein's 25 best DIAMOND hits only; remaking it (the old one moves to {keep}; "
                     "runs trained on it can still be evaluated with --split that directory)")
                if keep.exists():
                    shutil.rmtree(keep)
                os.replace(d, keep)
        if not (d / "test.txt").is_file():
            if not build:
                raise InputError(f"split {s!r} has not been made yet ({d})")
            make_split(s, d, seed=seed)
        return read_split(d)
    d = Path(s)
    if not d.is_dir():
        raise InputError(f"--split {s!r}: neither a built-in split ({', '.join(BUILTIN)}) nor a directory")
    return read_split(d)


def read_split(d: Path) -> Split:
    """Read ``train.txt``/``valid.txt``/``test.txt``; errors name the file and line."""
    parts: dict[str, list[str]] = {}
    seen: dict[str, tuple[str, int]] = {}
    for name in PARTS:
        p = d / f"{name}.txt"
        if not p.is_file():
            raise InputError(f"{d}: a split directory needs train.txt, valid.txt and test.txt; {p.name} is missing")
        ids: list[str] = []
        for lineno, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            acc = raw.strip()
            if not acc or acc.startswith("#"):
                continue
            if len(acc.split()) != 1:
                raise InputError(f"{p}: line {lineno}: expected one accession per line, got {raw[:60]!r}")
            if acc in seen:
                other = seen[acc]
                raise InputError(f"{p}: line {lineno}: {acc} is already listed in {other[0]}.txt line {other[1]}")
            seen[acc] = (name, lineno)
            ids.append(acc)
        if not ids and name != "valid":
            raise InputError(f"{p}: no accessions")
        parts[name] = ids
    info_path = d / "split.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    return Split(parts["train"], parts["valid"], parts["test"], d, info)


def write_split(d: Path, parts: dict[str, list[str]], info: dict) -> None:
    """Write the three files and ``split.json`` into a temporary sibling, then rename it into place."""
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.parent / f".{d.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name in PARTS:
        (tmp / f"{name}.txt").write_text("".join(a + "\n" for a in parts[name]), encoding="utf-8")
    (tmp / "split.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)


def make_split(name: str, out: Path, seed: int = 0, threads: int | None = None, verbose: bool = True) -> Split:
    """Make a built-in split (see the module docstring) from metastudent-data and write it to ``out``."""
    from hypalign.data.protein import metastudent_go_dataset

    if name not in BUILTIN:
        raise InputError(f"unknown split {name!r}; built-in: {', '.join(BUILTIN)}")
    size, kind = name.split("-")
    say = _say if verbose else (lambda msg: None)
    say(f"making split {name} (seed {seed}) from metastudent-data")
    every = kind == "nohit"  # the older kinds keep their pool (and so their content): all three ontologies
    data = metastudent_go_dataset(require_all=not every)
    t0 = time.perf_counter()
    if kind == "random":
        parts = random_split(data.accessions, size, seed)
        info: dict = {}
    else:
        sizes = _sizes(len(data), size)
        pool = (SMALL_NOHIT_POOL if every else SMALL_HARD_POOL) if size == "small" else None
        parts, info = hard_split(data.accessions, data.sequences, sizes, pool, seed, threads=threads, say=say,
                                 check="any-hit" if every else "identity")
        pos = data.position
        lengths = {k: np.percentile([len(data.sequences[pos[a]]) for a in v], [10, 50, 90]).round().astype(int)
                   .tolist() for k, v in parts.items()}
        info["length_percentiles_10_50_90"] = lengths
    which = "any of BP, MF, CC" if every else "BP, MF and CC"
    info = {"name": name, "kind": kind, "size": size, "seed": seed, "pool": "metastudent-data 2014-01, proteins "
            f"annotated in {which} ({len(data)})", "counts": {k: len(v) for k, v in parts.items()},
            "seconds": round(time.perf_counter() - t0, 1), **info}
    write_split(out, parts, info)
    say(f"split {name}: " + ", ".join(f"{k} {len(v)}" for k, v in parts.items()) + f" -> {out}")
    return read_split(out)


def _say(msg: str) -> None:
    import sys

    print(f"[hypalign] {msg}", file=sys.stderr, flush=True)


def random_split(accessions: list[str], size: str, seed: int) -> dict[str, list[str]]:
    """A seeded permutation cut into train/valid/test (``small``: 20k/2k/2k; ``full``: 90/5/5 %)."""
    order = np.random.default_rng(seed).permutation(len(accessions))
    n = _sizes(len(accessions), size)
    cut = np.cumsum([n["test"], n["valid"], n["train"]])
    test, valid, train = order[: cut[0]], order[cut[0] : cut[1]], order[cut[1] : cut[2]]
    return {"train": [accessions[i] for i in train], "valid": [accessions[i] for i in valid],
            "test": [accessions[i] for i in test]}


def _sizes(pool: int, size: str) -> dict[str, int]:
    if size == "small":
        if pool < sum(SMALL.values()):
            raise InputError(f"the pool has {pool} proteins; a small split needs {sum(SMALL.values())}")
        return dict(SMALL)
    if size == "full":
        hold = round(pool * FULL_HOLDOUT)
        return {"train": pool - 2 * hold, "valid": hold, "test": hold}
    raise InputError(f"unknown split size {size!r}; expected small or full")


def hard_split(
    accessions: list[str], sequences: list[str], want: dict[str, int], pool_size: int | None = None,
    seed: int = 0, threads: int | None = None, say: object = None, check_max_targets: int = 0,
    check: str = "identity",
) -> tuple[dict[str, list[str]], dict]:
    """Cluster-disjoint split with no held-out protein >= 30 % identical to a training protein
    (``check="identity"``), or with no DIAMOND hit at all in train (``check="any-hit"``: e-value <=
    :data:`NOHIT_EVALUE`, every hit read).

    ``want``: proteins per part; ``pool_size``: cluster a seeded sample of this many proteins
    (``None``: all of them). ``check_max_targets``: DIAMOND targets per held-out protein in the identity
    check, 0 = every hit (check v2, the default); 25 rebuilds check v1, which let close homologs ranked
    below the 25 best hits through (``benchmarks/hard_split_check.py``)."""
    from hypalign.data.seqtools import diamond_blastp, mmseqs_cluster, tool_version

    log = say if callable(say) else (lambda msg: None)
    rng = np.random.default_rng(seed)
    if pool_size is not None and pool_size < len(accessions):
        pool = np.sort(rng.choice(len(accessions), pool_size, replace=False))
    else:
        pool = np.arange(len(accessions))
    ids = [accessions[i] for i in pool]
    seqs = [sequences[i] for i in pool]
    log(f"clustering {len(ids)} sequences with mmseqs2 at 30 % identity (measured on 2 cores: ~1 min for "
        "small's 30,000, 9-12 min for the whole pool)")
    t = time.perf_counter()
    labels = mmseqs_cluster(ids, seqs, min_seq_id=HARD_IDENTITY / 100, coverage=HARD_COVERAGE,
                            sensitivity=CLUSTER_SENSITIVITY, threads=threads)
    t_cluster = time.perf_counter() - t
    # deal whole clusters in a seeded order: test and valid first (with room for the DIAMOND filter), then train
    n_clusters = int(labels.max()) + 1
    members: list[list[int]] = [[] for _ in range(n_clusters)]
    for i, c in enumerate(labels.tolist()):
        members[c].append(i)
    order = rng.permutation(n_clusters)
    if check not in ("identity", "any-hit"):
        raise ValueError(f"check {check!r}: expected identity or any-hit")
    nohit = check == "any-hit"
    # identity: ~1/3 of the held-out candidates fail the DIAMOND check (mmseqs at -s 4 misses them); any hit: ~1/2
    margin = 3.0 if nohit else 2.0
    target = {"test": int(want["test"] * margin), "valid": int(want["valid"] * margin), "train": want["train"]}
    got: dict[str, list[int]] = {k: [] for k in PARTS}
    part_order = ["test", "valid", "train"]
    p = 0
    for c in order.tolist():
        while p < 3 and len(got[part_order[p]]) >= target[part_order[p]]:
            p += 1
        if p == 3:
            break
        got[part_order[p]].extend(members[c])
    train = got["train"][: want["train"]]  # dropping training proteins never creates a similarity
    held = got["test"] + got["valid"]
    log(f"checking {len(held)} held-out proteins against {len(train)} training proteins with DIAMOND "
        "(measured on 2 cores: 20 s for small, 15-18 min for full)")
    t = time.perf_counter()
    hits = diamond_blastp([ids[i] for i in held], [seqs[i] for i in held], [ids[i] for i in train],
                          [seqs[i] for i in train], max_target_seqs=0 if nohit else check_max_targets,
                          evalue=NOHIT_EVALUE if nohit else 1e-3, threads=threads)
    t_check = time.perf_counter() - t
    close = hits if nohit else hits.mask((hits.pident >= HARD_IDENTITY) & (hits.shorter_coverage >= HARD_COVERAGE))
    bad = {held[q] for q in close.query.tolist()}
    any_hit = {held[q] for q in hits.query.tolist()}
    out: dict[str, list[str]] = {"train": [ids[i] for i in train]}
    short: dict[str, int] = {}
    for part in ("test", "valid"):
        keep = [i for i in got[part] if i not in bad]
        if len(keep) < want[part]:
            if pool_size is not None:
                raise RuntimeError(f"{'no-hit' if nohit else 'hard'} split: only {len(keep)} {part} proteins left "
                                   f"after the DIAMOND check (wanted {want[part]}); use another seed")
            # the whole pool: no larger sample to draw from, so keep every protein that passed the check
            log(f"{part}: {len(keep)} proteins passed the identity check (aimed at {want[part]}); keeping all")
            short[part] = want[part] - len(keep)
        pick = np.sort(rng.choice(len(keep), min(want[part], len(keep)), replace=False))
        out[part] = [ids[keep[i]] for i in pick]
    clustering = (f"mmseqs2 easy-cluster --min-seq-id {HARD_IDENTITY / 100} -c {HARD_COVERAGE} --cov-mode 0 "
                  f"-s {CLUSTER_SENSITIVITY:g}; ")
    if nohit:
        criteria = (clustering + f"held-out proteins with any DIAMOND --more-sensitive hit (e <= {NOHIT_EVALUE:g}, all "
                    "targets) to a training protein dropped")
    else:
        criteria = (clustering + "held-out proteins with any DIAMOND --more-sensitive hit (e <= 1e-3, "
                    + ("all targets) " if check_max_targets == 0 else f"the {check_max_targets} best targets) ")
                    + f"of >= {HARD_IDENTITY:g} % identity over >= {HARD_COVERAGE:.0%} of the shorter sequence to a "
                    "training protein dropped")
    info = {
        "criteria": criteria,
        "check_version": HARD_CHECK_VERSION if check_max_targets == 0 or nohit else 1, "pool_size": len(ids),
        "clusters": n_clusters,
        ("dropped_by_any_hit_check" if nohit else "dropped_by_identity_check"): len(bad),
        "held_out_with_any_diamond_hit": len(any_hit), "held_out_checked": len(held),
        "held_out_short_of_target": short, "cluster_seconds": round(t_cluster, 1), "check_seconds": round(t_check, 1),
        "tools": {"mmseqs": tool_version("mmseqs"), "diamond": tool_version("diamond")},
    }
    return out, info
