"""The protein language model pre-trained here on Swiss-Prot (minus small-hard's held-out proteins and their DIAMOND
homologs): held-back masked-residue accuracy / perplexity against the residue-frequency floor, per masking schedule.

Each run is ``hypalign train protein-lm --masking M --seed S [EXTRA] -o RUNS/plm-{M}-sS`` (every other option at its
default, or as ``--extra`` gives; a finished run is reused).

    python benchmarks/protein_lm.py --runs runs/bench --maskings diffusion,esm --seeds 0
    python benchmarks/protein_lm.py --runs runs/bench --maskings diffusion --extra "--max-steps 600" --tag s600
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np

from _runs import mean_std, run_or_reuse

COLUMNS = [("mask15_accuracy", "accuracy, 15 % masked"), ("mask15_perplexity", "perplexity, 15 %"),
           ("unigram_perplexity", "residue-frequency perplexity"), ("mask50_accuracy", "accuracy, 50 % masked"),
           ("mask50_perplexity", "perplexity, 50 %"), ("diffusion_loss", "diffusion loss"),
           ("sequences_per_s", "forward seq/s")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/bench-plm")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--maskings", default="diffusion,esm")
    ap.add_argument("--extra", default="", help="more train options, e.g. '--max-steps 600'")
    ap.add_argument("--tag", default="", help="appended to the run names (runs with other --extra)")
    ap.add_argument("--only-table", action="store_true")
    args = ap.parse_args()
    rows = []
    for masking in args.maskings.split(","):
        res = [r for seed in (int(s) for s in args.seeds.split(","))
               if (r := run_or_reuse(Path(args.runs) / f"plm-{masking}{'-' + args.tag if args.tag else ''}-s{seed}",
                                     ["protein-lm", "--masking", masking, "--seed", str(seed),
                                      *shlex.split(args.extra)], train=not args.only_table)) is not None]
        if res:
            rows.append((masking, res))
    print("\n| masking | seeds | steps | " + " | ".join(n for _, n in COLUMNS) + " | train time |")
    print("|---|---:|---:|" + "---:|" * (len(COLUMNS) + 1))
    for masking, res in rows:
        cells = [mean_std(res, k) for k, _ in COLUMNS]
        t = np.mean([r["train_seconds"] for r in res]) / 60
        print(f"| {masking} | {len(res)} | {res[0]['steps']} | " + " | ".join(cells) + f" | {t:.1f} min |")


if __name__ == "__main__":
    main()
