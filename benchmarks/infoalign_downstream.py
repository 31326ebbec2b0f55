"""InfoAlign downstream benchmark (issue 26): pre-trained runs against ECFP4 fingerprints + random forest and ridge,
on the packaged property sets (Lipophilicity, ESOL, FreeSolv with scaffold splits; MoleculeACE's 30 activity sets
with their own split) — RMSE (and MAE) on every test part, MoleculeACE's activity-cliff RMSE, and the mean rank of
each method over the tasks (rank 1 = lowest RMSE).

    python benchmarks/infoalign_downstream.py --run ia=/tmp/bench/ia-default-s0 [--run …] [--seeds 0 1 2] \
        [--sets lipophilicity esol freesolv moleculeace] [--scratch-epochs 30] [--finetune-epochs 30] [--json out.json]

Runs are scored as ``hypalign eval RUN --property`` scores them (frozen μ, the MLP head of
:func:`hypalign.eval.property.fit_head`, one head per seed; with ``--finetune-epochs`` also as ``--finetune`` does);
the forest (200 trees) is fitted once per seed as well.
Also prints each run's embedding speed (molecules/s of ``embed_smiles`` over a set, SMILES parsing included).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", default=[], help="LABEL=RUN_DIR (repeatable)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--sets", nargs="+", default=["lipophilicity", "esol", "freesolv", "moleculeace"])
    ap.add_argument("--baselines", nargs="*", default=["forest", "ridge"])
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--scratch-epochs", type=int, default=0,
                    help="also the same GIN trained from scratch on each task for up to this many epochs (0: not)")
    ap.add_argument("--finetune-epochs", type=int, default=0,
                    help="also each run's encoder fine-tuned with the head for up to this many epochs (0: not)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from rdkit import Chem

    from hypalign.data.molecule_benchmarks import downstream_sets
    from hypalign.data.molecule_sources import fetch_sources
    from hypalign.data.molecules import morgan_fingerprints
    from hypalign.eval.property import forest_predictions
    from hypalign.models.infoalign import InfoAlign
    from hypalign.recipes.infoalign.downstream import (
        evaluate_finetuned,
        evaluate_frozen,
        fit_from_scratch,
        scores_over_seeds,
    )
    from hypalign.recipes.infoalign.evaluation import embed_smiles

    runs = {}
    for spec in args.run:
        label, _, path = spec.partition("=")
        runs[label] = InfoAlign.from_pretrained(str(Path(path) / "model")).eval()
    sets = [s for s in downstream_sets(fetch_sources(print))
            if s.name in args.sets or (s.name.startswith("moleculeace/") and "moleculeace" in args.sets)]
    table: dict[str, dict[str, dict[str, float]]] = {}
    speed: dict[str, list[float]] = {k: [] for k in runs}
    for s in sets:
        row: dict[str, dict[str, float]] = {}
        y, test = s.labels, s.parts["test"]
        cliff = s.cliff
        for label, model in runs.items():
            t = time.perf_counter()
            x, _ = embed_smiles(model, s.smiles)
            speed[label].append(len(s.smiles) / (time.perf_counter() - t))
            row[label] = evaluate_frozen(x.numpy(), y, s.parts, "regression", args.seeds, cliff)
            if args.finetune_epochs:
                row[f"{label}+finetune"] = evaluate_finetuned(model, s.smiles, y, s.parts, "regression", args.seeds,
                                                              cliff, epochs=args.finetune_epochs)
        fp = morgan_fingerprints([Chem.MolFromSmiles(m) for m in s.smiles], 2, 1024).astype(np.float32)
        train = np.concatenate([s.parts["train"], s.parts["valid"]])
        for base in args.baselines:
            row[f"ecfp4+{base}"] = scores_over_seeds(
                partial(forest_predictions, fp, y, train, "regression", model=base, trees=args.trees, n_jobs=-1),
                y, s.parts, "regression", args.seeds if base == "forest" else args.seeds[:1], cliff)
        if args.scratch_epochs:
            row["gin-scratch"] = scores_over_seeds(
                partial(fit_from_scratch, s.smiles, y, s.parts, "regression", epochs=args.scratch_epochs),
                y, s.parts, "regression", args.seeds, cliff)
        table[s.name] = row
        print(f"{s.name} ({len(s.smiles)} molecules, test {len(test)}): "
              + "; ".join(f"{k} RMSE {v['rmse']:.3f}" + (f" ± {v['rmse_std']:.3f}" if "rmse_std" in v else "")
                          for k, v in row.items()), flush=True)
    methods = list(next(iter(table.values())))
    ranks = {m: [] for m in methods}
    for row in table.values():
        order = sorted(methods, key=lambda m: row[m]["rmse"])
        for r, m in enumerate(order, 1):
            ranks[m].append(r)
    print("\n| method | mean rank (RMSE) | tasks won | mean RMSE | " + " | ".join(s.name.replace("moleculeace/", "")
                                                                        for s in sets[:3]) + " |")
    print("|---|---|---|---|" + "---|" * min(3, len(sets)))
    for m in methods:
        won = sum(1 for r in ranks[m] if r == 1)
        mean_rmse = np.mean([table[s][m]["rmse"] for s in table])
        print(f"| {m} | {np.mean(ranks[m]):.2f} | {won} / {len(table)} | {mean_rmse:.3f} | "
              + " | ".join(f"{table[s.name][m]['rmse']:.3f}" for s in sets[:3]) + " |")
    for label, v in speed.items():
        print(f"{label}: embedding {np.median(v):.0f} molecules/s (median over sets)")
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, "ranks": ranks, "speed": speed}, indent=2))


if __name__ == "__main__":
    main()
