"""Does nearest-neighbour transfer in a ProtCLIP model's space find a query's homologs? (issue 6 diagnosis)

    python benchmarks/protclip_homologs.py --split small-hard [RUN ...] [--time-search]

For each trained run (``hypalign train protclip`` / ``benchmarks/protclip_small.py`` run directories on the
split): among the test proteins with a DIAMOND hit in the training proteins, the share whose best hit
(highest bitscore) is among the model's 10 nearest training proteins, and the share with any hit there;
then Fmax / MRR of the model and of DIAMOND + frequency on the test proteins with and without a hit.
Also the training proteins' homolog lists used by the ``homology`` objective — how many, their identities,
the share below ``REMOTE_IDENTITY`` (``--time-search``: search again without the cache and time it); without
a RUN only these and the test proteins' DIAMOND hits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from hypalign.data.go_split import prepare_go_split
from hypalign.data.seqtools import homolog_lists
from hypalign.eval.baselines import best_hits, run_baselines
from hypalign.eval.function import evaluate_scores
from hypalign.objectives.miners import REMOTE_IDENTITY
from hypalign.recipes.protclip import load_protclip_run, run_scores

ONTS = ("BP", "MF", "CC")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--split", default="small-hard")
    ap.add_argument("--time-search", action="store_true", help="run the all-against-all search again, timed")
    args = ap.parse_args()
    gsd = prepare_go_split(args.split)
    t = time.perf_counter()
    indptr, _, pident = homolog_lists(gsd.accessions("train"), gsd.sequences("train"), cache=not args.time_search)
    n = np.diff(indptr)
    print(f"training proteins with a homolog: {(n > 0).mean():.1%} of {len(n)}, median {statistics.median(n[n > 0])} "
          f"(search {'timed' if args.time_search else 'or cache'}: {time.perf_counter() - t:.0f} s)", flush=True)
    remote = pident < REMOTE_IDENTITY
    with_remote = np.bincount(np.repeat(np.arange(len(n)), n)[remote], minlength=len(n)) > 0
    print(f"pair identity median {np.median(pident):.1f} %; remote pairs (< {REMOTE_IDENTITY:.0f} %) "
          f"{remote.mean():.1%}; training proteins with a remote homolog {with_remote.mean():.1%}", flush=True)
    base = run_baselines(gsd, "test", aupr=False)
    hits, hit = base["hits"]["test"], base["groups"]["test"] >= 0
    first = best_hits(hits)
    best = dict(zip(hits.query[first].tolist(), hits.target[first].tolist(), strict=True))
    targets: dict[int, set[int]] = {}
    for q, r in zip(hits.query.tolist(), hits.target.tolist(), strict=True):
        targets.setdefault(q, set()).add(r)
    print(f"test proteins with a DIAMOND hit: {int(hit.sum())} of {len(hit)}, best hit < {REMOTE_IDENTITY:.0f} % "
          f"identity for {int((base['groups']['test'] == 0).sum())}", flush=True)
    for run in args.runs:
        model, cfg = load_protclip_run(run)
        emb, _, all_scores = run_scores(model, cfg, gsd, ("test",))
        scores = all_scores["test"]
        _, idx = model.transfer_reference.neighbours(emb["test"], model.search_geometry)
        top = idx[:, :10]
        best_in = np.mean([best[q] in top[q] for q in best])
        any_in = np.mean([bool(targets[q] & set(top[q].tolist())) for q in targets])
        print(f"\n{run} ({cfg['protclip'].get('objectives')}, {cfg['protclip']['geometry']}): best hit among the 10 "
              f"nearest {best_in:.1%}, any hit {any_in:.1%}")
        print("| ontology | proteins | model Fmax | model MRR | DIAMOND + frequency Fmax | DIAMOND + frequency MRR |")
        print("|---|---|---|---|---|---|")
        for o in ONTS:
            for name, rows in (("with a hit", hit), ("without", ~hit)):
                m = evaluate_scores(gsd, o, "test", scores[o], fast=True, rows=rows)
                b = evaluate_scores(gsd, o, "test", base["scores"]["diamond+frequency"][o], fast=True, rows=rows)
                print(f"| {o} | {name} ({int(rows.sum())}) | {m['fmax']:.3f} | {m['mrr']:.3f} | {b['fmax']:.3f} "
                      f"| {b['mrr']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
