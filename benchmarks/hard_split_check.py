"""The hard split's identity check, v1 (DIAMOND's 25 best hits per held-out protein) against v2 (every hit).

Builds ``small-hard`` both ways from metastudent-data (same seed, same clusters, same training proteins),
then re-checks each version's held-out proteins against its training proteins with *every* DIAMOND hit
and counts those with a close (>= 30 % identity over >= 50 % of the shorter sequence) training homolog:
v1 lets some through, v2 none. Also prints how many test proteins the two versions share. Nothing is
written to the split cache (the splits live in memory). ~6 min on 2 cores (2026-11-23, --threads 1).

    python benchmarks/hard_split_check.py
"""

from __future__ import annotations

import argparse
import time

from hypalign.data.protein import metastudent_go_dataset
from hypalign.data.seqtools import diamond_blastp
from hypalign.data.splits import HARD_COVERAGE, HARD_IDENTITY, SMALL_HARD_POOL, _sizes, hard_split


def close_homologs(parts: dict[str, list[str]], seq: dict[str, str], threads: int | None) -> int:
    held = parts["valid"] + parts["test"]
    hits = diamond_blastp(held, [seq[a] for a in held], parts["train"], [seq[a] for a in parts["train"]],
                          max_target_seqs=0, threads=threads)
    close = hits.mask((hits.pident >= HARD_IDENTITY) & (hits.shorter_coverage >= HARD_COVERAGE))
    return len(set(close.query.tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    data = metastudent_go_dataset()
    seq = dict(zip(data.accessions, data.sequences, strict=True))
    sizes = _sizes(len(data), "small")
    out = {}
    for version, max_targets in (("v1", 25), ("v2", 0)):
        t = time.perf_counter()
        parts, info = hard_split(data.accessions, data.sequences, sizes, SMALL_HARD_POOL, args.seed, args.threads,
                                 check_max_targets=max_targets)
        n_close = close_homologs(parts, seq, args.threads)
        out[version] = parts
        held = len(parts["valid"]) + len(parts["test"])
        print(f"{version} (max targets {max_targets or 'all'}): train {len(parts['train'])}, dropped by the check "
              f"{info['dropped_by_identity_check']}; held-out proteins with a close training homolog (every hit): "
              f"{n_close} of {held}  [{time.perf_counter() - t:.0f} s]", flush=True)
    same_train = set(out["v1"]["train"]) == set(out["v2"]["train"])
    shared = len(set(out["v1"]["test"]) & set(out["v2"]["test"]))
    print(f"same training proteins: {same_train}; test proteins shared: {shared} of {len(out['v2']['test'])}")


if __name__ == "__main__":
    main()
