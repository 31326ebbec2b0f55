"""How sharp should a ProtCLIP model's nearest-neighbour transfer be? Fmax against MRR (issue 6 diagnosis)

    python benchmarks/protclip_transfer.py RUN [--split small-hard] [--ontologies BP]

A trained run's GO scores are ``alpha * transfer + (1 - alpha) * term scores``, the transfer being the
``softmax(-d / tau)`` vote of the ``k`` nearest training proteins (`TransferReference`); training chooses
``k``, ``tau`` and ``alpha`` by Fmax on the validation proteins. This prints valid and test Fmax and MRR
for a grid of the three on the same embeddings, so one sees what each choice costs on the other metric
(a sharp vote ranks a query's specific terms better; a broad one calibrates better across proteins).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hypalign.data.go_split import prepare_go_split
from hypalign.eval import baselines as bl
from hypalign.eval.function import evaluate_scores
from hypalign.recipes.protclip import load_protclip_run, run_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default=None, help="default: the run's own split")
    ap.add_argument("--ontologies", nargs="+", default=["BP"])
    ap.add_argument("--ks", nargs="+", type=int, default=[10, 50, 200])
    ap.add_argument("--taus", nargs="+", type=float, default=[0.03, 0.1, 0.3])
    ap.add_argument("--alphas", nargs="+", type=float, default=[1.0, 0.9, 0.7])
    args = ap.parse_args()
    model, cfg = load_protclip_run(args.run)
    ref = model.transfer_reference
    if ref is None:
        raise SystemExit(f"{args.run}: the run has no nearest-neighbour reference (trained with --transfer-k 0)")
    gsd = prepare_go_split(args.split or cfg["protclip"]["split"])
    parts = ("valid", "test")
    emb, terms, _ = run_scores(model, cfg, gsd, parts)
    nn = {p: ref.neighbours(emb[p], model.search_geometry) for p in parts}
    print(f"{args.run}: chosen on valid by Fmax: k {ref.ks}, tau {ref.tau}, alpha {ref.alpha}")
    for o in args.ontologies:
        print(f"\n{o}\n| k | tau | alpha | valid Fmax | valid MRR | test Fmax | test MRR |")
        print("|---|---|---|---|---|---|---|")
        for k in args.ks:
            for tau in args.taus:
                xfer = {p: bl.embedding_transfer_scores(nn[p][0][:, :k], nn[p][1][:, :k], ref.labels[o], tau)
                        for p in parts}
                for al in args.alphas:
                    m = {p: evaluate_scores(gsd, o, p, bl.blend(xfer[p], terms[p][o], al), fast=True) for p in parts}
                    print(f"| {k} | {tau} | {al} | " + " | ".join(f"{m[p]['fmax']:.3f} | {m[p]['mrr']:.3f}"
                                                               for p in parts) + " |", flush=True)


if __name__ == "__main__":
    main()
