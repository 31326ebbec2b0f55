"""Hyp-ViT on real multi-style images: the emoji as a metric-learning set (every emoji a class, its three art styles
and skin tones the samples; test classes = the 20 held-out subgroups, 339 emoji never trained on), Poincaré ball vs
the sphere over seeds, the CPU default encoder (the small CNN from scratch) at 64 px.

Each run is ``hypalign train hypvit --data emoji --geometry G --seed S --epochs E -o RUNS/hypvit-emoji-G-eE-sS``
with every other option at its default (a finished run is reused), then its ``eval.json`` (Recall@1/2/4/8 and MAP@R
on the test classes, in each embedding's own geometry) is read.

    python benchmarks/hypvit_emoji.py --runs runs/bench --seeds 0,1,2 --epochs 20
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _runs import mean_std, run_or_reuse

COLUMNS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/bench-hypvit-emoji")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--geometries", default="poincare,sphere")
    ap.add_argument("--only-table", action="store_true", help="read the finished runs, train nothing")
    args = ap.parse_args()
    rows = []
    for geom in args.geometries.split(","):
        res = [r for seed in (int(s) for s in args.seeds.split(","))
               if (r := run_or_reuse(Path(args.runs) / f"hypvit-emoji-{geom}-e{args.epochs}-s{seed}",
                                     ["hypvit", "--data", "emoji", "--geometry", geom, "--seed", str(seed),
                                      "--epochs", str(args.epochs)], train=not args.only_table)) is not None]
        if res:
            rows.append((geom, res))
    print("\n| geometry | seeds | " + " | ".join(c.replace("recall", "R") for c in COLUMNS) + " | train time |")
    print("|---|---:|" + "---:|" * (len(COLUMNS) + 1))
    for geom, res in rows:
        t = np.mean([r["train_seconds"] for r in res]) / 60
        cells = [mean_std(res, c, scale=100, digits=1) for c in COLUMNS]
        print(f"| {geom} | {len(res)} | " + " | ".join(cells) + f" | {t:.1f} min |")


if __name__ == "__main__":
    main()
