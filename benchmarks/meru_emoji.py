"""MERU vs CLIP (and MERU + the tree objective) on emoji, the CPU defaults: zero-shot top-1 at every level, Recall@5,
mistake severity and generality, mean ± std over seeds, on the held-out style and the held-out concepts.

Each run is ``hypalign train meru|clip --split SPLIT --seed S -o RUNS/{variant}-{style|concepts}-s{S}`` with every
other option at its default (a finished run — its ``eval.json`` — is reused, so the table can be rebuilt or extended
one run at a time), then its ``eval.json`` is read.

    python benchmarks/meru_emoji.py --runs runs/bench --seeds 0,1,2                      # everything: ~12 x 17 min
    python benchmarks/meru_emoji.py --runs runs/bench --seeds 0 --splits style --variants meru,clip
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _runs import mean_std, run_or_reuse

VARIANTS = {"meru": ("meru", []), "clip": ("clip", []),
            "meru-tree": ("meru", ["--objectives", "contrastive,entailment,tree"]),
            "meru-contrastive": ("meru", ["--objectives", "contrastive"])}  # ablation: the Lorentz model alone
SPLITS = {"style": "held-out-style", "concepts": "held-out-concepts"}
COLUMNS = [("zsleaf_top1", "zero-shot emoji"), ("zs1_top1", "subgroup"), ("zs0_top1", "group"),
           ("t2i_recall@5", "t2i R@5"), ("i2t_recall@5", "i2t R@5"), ("mistake_severity", "mistake severity"),
           ("generality_tau", "generality τ")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/bench-meru")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--splits", default="style,concepts")
    ap.add_argument("--variants", default="meru,clip,meru-tree")
    ap.add_argument("--only-table", action="store_true", help="read the finished runs, train nothing")
    args = ap.parse_args()
    runs = Path(args.runs)
    rows = []
    for split in args.splits.split(","):
        for variant in args.variants.split(","):
            recipe, extra = VARIANTS[variant]
            results = [r for seed in (int(s) for s in args.seeds.split(","))
                       if (r := run_or_reuse(runs / f"{variant}-{split}-s{seed}",
                                             [recipe, "--split", SPLITS[split], "--seed", str(seed), *extra],
                                             train=not args.only_table)) is not None]
            if results:
                rows.append((split, variant, results))
    print("\n| split | model | seeds | " + " | ".join(name for _, name in COLUMNS) + " | train time | embed img/s |")
    print("|---|---|---:|" + "---:|" * (len(COLUMNS) + 2))
    for split, variant, res in rows:
        cells = [mean_std(res, key) for key, _ in COLUMNS]
        t = np.mean([r["train_seconds"] for r in res]) / 60
        rate = np.mean([r["images_per_s"] for r in res])
        print(f"| {SPLITS[split]} | {variant} | {len(res)} | " + " | ".join(cells) + f" | {t:.1f} min | {rate:.0f} |")

if __name__ == "__main__":
    main()
