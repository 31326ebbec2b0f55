"""Prediction speed of a trained ProtCLIP run against DIAMOND, the tool a biologist uses today (issue 6:
``predict`` embeds >= 50 proteins/s on CPU).

    python benchmarks/protclip_predict.py RUN [--n 500] [--repeats 3] [--threads 2]

(``--threads``: torch and DIAMOND threads; the ``hypalign predict`` command uses torch's default, every core.)

Takes the first ``--n`` test proteins of the run's split and times, best of ``--repeats``:

* ``predict_go`` (what ``hypalign predict`` runs after loading the model: embedding, the GO term
  projections, exact nearest-neighbour search over the training proteins, GO propagation, top terms);
* the whole ``hypalign predict RUN --fasta FILE --json`` command (Python start-up and model loading included);
* DIAMOND blastp ``--more-sensitive`` of the same queries against the run's training proteins
  (``makedb`` included, as the baselines run it).

Prints proteins per second and the ratios to DIAMOND.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hypalign.data.go_split import prepare_go_split
from hypalign.data.seqtools import diamond_blastp, write_fasta
from hypalign.recipes.protclip import load_protclip_run, predict_go


def best_of(repeats: int, fn: object) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_protclip_run(args.run)
    gsd = prepare_go_split(cfg["protclip"]["split"])
    ids, seqs = gsd.accessions("test")[: args.n], gsd.sequences("test")[: args.n]
    n = len(seqs)
    print(f"{args.run}: {n} test proteins of {cfg['protclip']['split']} (mean length "
          f"{sum(map(len, seqs)) / n:.0f}), {args.threads} threads, best of {args.repeats}", flush=True)
    predict_go(model, cfg, seqs[:8], top=5)  # warm-up: term table, caches
    t_pred = best_of(args.repeats, lambda: predict_go(model, cfg, seqs, top=5))
    with tempfile.TemporaryDirectory() as d:
        fasta = Path(d) / "q.fasta"
        write_fasta(fasta, ids, seqs)
        cmd = [sys.executable, "-m", "hypalign.cli.main", "predict", str(args.run), "--fasta", str(fasta), "--top",
               "5", "--json"]  # torch's default threads: every core
        t_cli = best_of(args.repeats, lambda: subprocess.run(cmd, check=True, capture_output=True))
    train_ids, train_seqs = gsd.accessions("train"), gsd.sequences("train")
    t_dia = best_of(args.repeats, lambda: diamond_blastp(ids, seqs, train_ids, train_seqs, threads=args.threads))
    print("| step | seconds | proteins/s | vs DIAMOND |")
    print("|---|---|---|---|")
    for name, t in (("predict_go", t_pred), ("hypalign predict (whole command)", t_cli),
                    (f"DIAMOND blastp --more-sensitive vs {len(train_seqs)} training proteins", t_dia)):
        print(f"| {name} | {t:.1f} | {n / t:.0f} | {t_dia / t:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
