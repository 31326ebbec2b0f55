"""Model + DIAMOND: how much can any blend weight gain over DIAMOND alone? (issue 6 diagnosis)

    python benchmarks/protclip_blend.py RUN [--split small-random]

For a trained run and its split: DIAMOND transfer alone, then ``alpha * DIAMOND + (1 - alpha) * model``
on the proteins with a DIAMOND hit for a grid of ``alpha`` (one weight for all), the proteins without a
hit either scored by the model or left without prediction (DIAMOND's own behaviour) — Fmax on valid
and on test. CAFA's protein-centric precision averages only over proteins with a score above the
threshold, so predicting for proteins without a hit can lower it: this shows by how much, and whether
the weights the validation proteins prefer are the ones the test proteins would.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hypalign.data.go_split import prepare_go_split
from hypalign.eval import baselines as bl
from hypalign.eval.baselines import diamond_hits
from hypalign.eval.function import evaluate_scores
from hypalign.recipes.protclip import load_protclip_run, run_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default=None, help="default: the run's own split")
    ap.add_argument("--alphas", nargs="+", type=float, default=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    args = ap.parse_args()
    model, cfg = load_protclip_run(args.run)
    gsd = prepare_go_split(args.split or cfg["protclip"]["split"])
    parts = ("valid", "test")
    _, _, scores = run_scores(model, cfg, gsd, parts)
    hits = {p: diamond_hits(gsd, p) for p in parts}
    has = {p: bl.has_hit(hits[p], len(gsd.rows[p])) for p in parts}
    print(f"{args.run}: proteins with a DIAMOND hit: " + ", ".join(f"{p} {has[p].mean():.1%}" for p in parts))
    for o in gsd.ontologies:
        dia = {p: bl.diamond_transfer_scores(hits[p], gsd.truth[o]["train"], len(gsd.rows[p])) for p in parts}

        def fmax(p: str, s: np.ndarray, o: str = o) -> float:
            return evaluate_scores(gsd, o, p, s, fmax_only=True)["fmax"]

        # the blend of protclip_small.py (weights per identity group of the best hit, chosen on valid, the model
        # alone without a hit), and the same with a weight of its own for the proteins without a hit
        ng = len(bl.IDENTITY_BOUNDS) + 1
        grp = {p: bl.identity_groups(hits[p], len(gsd.rows[p])) for p in parts}
        freq = {p: bl.term_frequency_scores(gsd.truth[o]["train"], len(gsd.rows[p])) for p in parts}
        chosen = {}
        for other, sc in (("model", {p: scores[p][o] for p in parts}), ("frequency", freq)):
            for name, gs, n in ((f"DIAMOND + {other} per group, no hit: {other}", grp, ng),
                                (f"DIAMOND + {other} per group + no-hit weight",
                                 {p: bl.no_hit_group(grp[p], ng) for p in parts}, ng + 1)):
                w, _ = bl.fit_group_blend(gsd, o, dia, sc, gs, n)
                chosen[name] = (w, [fmax(p, bl.blend_groups(dia[p], sc[p], w, gs[p])) for p in parts])
        print(f"\n{o}\n| scores | valid Fmax | test Fmax |\n|---|---|---|")
        for name, (w, v) in chosen.items():
            print(f"| {name} (valid-chosen {w}) | {v[0]:.4f} | {v[1]:.4f} |")
        print("| DIAMOND alone | " + " | ".join(f"{fmax(p, dia[p]):.4f}" for p in parts) + " |")
        print("| model alone | " + " | ".join(f"{fmax(p, scores[p][o]):.4f}" for p in parts) + " |")
        for al in args.alphas:
            for rest in ("model", "none"):
                row = []
                for p in parts:
                    mixed = bl.blend(dia[p], scores[p][o], al, has[p])  # no hit: the model alone
                    if rest == "none":
                        mixed[~has[p]] = 0.0
                    row.append(f"{fmax(p, mixed):.4f}")
                print(f"| alpha {al}, no hit: {rest} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
