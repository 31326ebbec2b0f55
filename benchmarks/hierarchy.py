"""Hierarchy embedding: hypalign vs gensim's PoincareModel on the same closure and dimension.

Reports reconstruction MAP (Nickel & Kiela: each node's hypernyms ranked among its non-hypernyms,
the node itself excluded; :func:`hypalign.eval.hierarchy.reconstruction` for both tools) against
wall-clock training time.

    python benchmarks/hierarchy.py                       # WordNet mammals, 10-d
    python benchmarks/hierarchy.py --gensim-seconds 400  # give gensim a longer budget
    python benchmarks/hierarchy.py --source wordnet:nouns --epochs 250 --gensim-seconds 0 --eval-nodes 5000
    python benchmarks/hierarchy.py --source wordnet:nouns --preset deep --gensim-seconds 600 --eval-nodes 2000

``--preset construct`` is :func:`hypalign.models.hierarchy.combinatorial_construction` alone (float64
Poincaré ball, nothing trained; its time is the placement's). ``--preset deep`` is the setting for deep
hierarchies (docs/hierarchy.md): float64 Poincaré ball, Riemannian Adam
(lr 0.1, cosine decay), from the combinatorial construction, 10 negatives of which 5 from the positive
ancestor's descendants, batch 2048, 30 epochs, no burn-in. ``--preset deep-warp`` is ``deep`` followed by
a second run from its embeddings with ``--loss warp`` (rank-weighted margin loss on each node's mined nearest
non-ancestors: ``--refine-epochs`` 16, pool 128, 32 negatives, batch 4096, Riemannian Adam lr 0.03 with
cosine decay); the time reported is the placement plus both runs' training. Single options given after a
preset override it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from hypalign.data.hierarchy_sources import load_source
from hypalign.eval.hierarchy import reconstruction
from hypalign.geometry import PoincareBall
from hypalign.recipes.hierarchy import HierarchyConfig, train_hierarchy
from hypalign.train import TrainConfig

PRESETS = {
    "papers": {"model": "lorentz", "optimizer": "sparse_adam", "dtype": "float32", "init": "random",
               "local_negatives": 0, "schedule": "constant", "burnin": 10},
    "deep": {"model": "poincare", "optimizer": "radam", "dtype": "float64", "init": "combinatorial",
             "local_negatives": 5, "schedule": "cosine", "burnin": 0, "lr": 0.1, "negatives": 10, "batch_size": 2048,
             "epochs": 30, "eval_every": 10},
    "deep-warp": {"model": "poincare", "optimizer": "radam", "dtype": "float64", "init": "combinatorial",
                  "local_negatives": 5, "schedule": "cosine", "burnin": 0, "lr": 0.1, "negatives": 10,
                  "batch_size": 2048, "epochs": 30, "eval_every": 10, "refine_epochs": 16},
    "construct": {"model": "poincare", "dtype": "float64", "init": "combinatorial", "epochs": 0, "optimizer": "radam",
                  "local_negatives": 0, "schedule": "constant", "burnin": 0},
}


def run_gensim(h, dim: int, budget_s: float, chunk_epochs: int, nodes: np.ndarray | None) -> list[tuple[float, float]]:
    from gensim.models.poincare import PoincareModel

    closure = h.closure()
    relations = [(h.names[c], h.names[p]) for c, p in closure.tolist()]
    model = PoincareModel(relations, size=dim, negative=10, burn_in=10, seed=0, workers=1)
    anc = h.ancestors()
    curve, trained, epochs = [], 0.0, 0
    while trained < budget_s:
        t = time.perf_counter()
        model.train(epochs=chunk_epochs, batch_size=10, print_every=10**9)
        trained += time.perf_counter() - t
        epochs += chunk_epochs
        vecs = np.stack([model.kv[n] for n in h.names])
        m = reconstruction(torch.from_numpy(vecs.astype(np.float64)), anc, PoincareBall(c=1.0), nodes=nodes)["map"]
        curve.append((trained, m))
        print(f"  gensim  {epochs:5d} epochs  {trained:7.1f} s  MAP {m:.3f}", flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="wordnet:mammal.n.01")
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--negatives", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--eval-nodes", type=int, default=0, help="nodes sampled for the curve (0 = all)")
    ap.add_argument("--gensim-seconds", type=float, default=120.0, help="gensim's training budget (0 = skip)")
    ap.add_argument("--gensim-chunk", type=int, default=25, help="gensim epochs between evaluations")
    ap.add_argument("--out", default="/tmp/hypalign-bench-hierarchy")
    ap.add_argument("--preset", choices=list(PRESETS), default="papers",
                    help="papers: Lorentz, lazy Adam, random start (the defaults above); deep, construct: see the "
                         "module doc")
    ap.add_argument("--model", default=None)
    ap.add_argument("--optimizer", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--init", default=None)
    ap.add_argument("--local-negatives", type=int, default=None)
    ap.add_argument("--schedule", default=None)
    ap.add_argument("--burnin", type=int, default=None)
    ap.add_argument("--refine-epochs", type=int, default=0, help="then this many epochs of --loss warp from the run")
    ap.add_argument("--refine-lr", type=float, default=0.03)
    ap.add_argument("--refine-pool", type=int, default=128, help="--hard-pool of the warp run")
    ap.add_argument("--refine-negatives", type=int, default=32)
    ap.add_argument("--refine-batch-size", type=int, default=4096)
    args = ap.parse_args()
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in sys.argv[1:] if a.startswith("--")}
    for k, v in PRESETS[args.preset].items():  # the preset, except where an option was given
        if k not in given:
            setattr(args, k, v)

    h = load_source(args.source)
    print(f"{args.source}: {h.n_nodes} nodes, {len(h.closure())} closure pairs, dim {args.dim}")
    cfg = HierarchyConfig(source=args.source, dim=args.dim, model=args.model, negatives=args.negatives,
                          batch_size=args.batch_size, eval_nodes=args.eval_nodes, init=args.init,
                          local_negatives=args.local_negatives, dtype=args.dtype)
    tc = TrainConfig(run_dir=args.out, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                     schedule=args.schedule, burnin_epochs=args.burnin, eval_every=args.eval_every, progress=False,
                     save_interval_s=60, log_every=50)
    print(f"hypalign preset {args.preset}: {args.model} {args.dtype}, {args.optimizer} lr {args.lr} "
          f"({args.schedule}), init {args.init}, {args.negatives} negatives ({args.local_negatives} local), "
          f"batch {args.batch_size}, {args.epochs} epochs, burn-in {args.burnin}")
    t = time.perf_counter()
    out = train_hierarchy(cfg, tc, hierarchy=h)
    wall = time.perf_counter() - t
    import json

    log = f"{args.out}/metrics.jsonl"
    evals = [json.loads(x) for x in open(log) if "eval/map" in x] if args.epochs else []
    for e in evals:
        tag = " (sampled nodes)" if args.eval_nodes else ""
        print(f"  hypalign epoch {e['epoch']:4d}  {e['elapsed_s']:7.1f} s  MAP {e['eval/map']:.3f}{tag}")
    # time to the embedding: the placement (init) plus training; for --init random the init is ~0
    spent = out["train_seconds"] + out["init_seconds"]
    print(f"hypalign: init {out['init']} {out['init_seconds']:.1f} s, {out['epochs']} epochs, training "
          f"{out['train_seconds']:.1f} s (wall incl. data + eval {wall:.1f} s): MAP {out['map']:.3f}, "
          f"mean rank {out['mean_rank']:.2f}")
    if args.refine_epochs:
        cfg2 = HierarchyConfig(source=args.source, dim=args.dim, model=args.model, negatives=args.refine_negatives,
                               batch_size=args.refine_batch_size, eval_nodes=args.eval_nodes, dtype=args.dtype,
                               loss="warp", hard_pool=args.refine_pool, init_from=args.out)
        tc2 = TrainConfig(run_dir=args.out + "-warp", epochs=args.refine_epochs, lr=args.refine_lr, optimizer="radam",
                          schedule="cosine", burnin_epochs=0, eval_every=args.eval_every, progress=False,
                          save_interval_s=60, log_every=50)
        print(f"hypalign refinement: --loss warp, pool {args.refine_pool}, {args.refine_negatives} negatives, batch "
              f"{args.refine_batch_size}, radam lr {args.refine_lr} (cosine), {args.refine_epochs} epochs")
        t = time.perf_counter()
        out2 = train_hierarchy(cfg2, tc2, hierarchy=h)
        wall2 = time.perf_counter() - t
        for e in [json.loads(x) for x in open(f"{args.out}-warp/metrics.jsonl") if "eval/map" in x]:
            tag = " (sampled nodes)" if args.eval_nodes else ""
            print(f"  warp     epoch {e['epoch']:4d}  {e['elapsed_s']:7.1f} s  MAP {e['eval/map']:.3f}  mean rank "
                  f"{e['eval/mean_rank']:.2f}{tag}")
        spent += out2["train_seconds"]
        print(f"hypalign refined: training {out2['train_seconds']:.1f} s (mining {out2['mine_seconds']:.1f} s of it; "
              f"wall incl. eval {wall2:.1f} s): MAP {out2['map']:.3f}, mean rank {out2['mean_rank']:.2f}; placement + "
              f"both trainings {spent:.1f} s")
        out = out2
    if args.gensim_seconds > 0:
        nodes = None
        if args.eval_nodes and args.eval_nodes < h.n_nodes:
            nodes = np.sort(np.random.default_rng(0).choice(h.n_nodes, args.eval_nodes, replace=False))
        curve = run_gensim(h, args.dim, args.gensim_seconds, args.gensim_chunk, nodes)
        best = max(m for _, m in curve)
        at = next((s for s, m in curve if m >= out["map"]), None)
        print(f"gensim: best MAP {best:.3f} within {curve[-1][0]:.0f} s of training; "
              + (f"reached hypalign's MAP after {at:.0f} s ({at / spent:.1f}x hypalign's init + training time)"
                 if at else "did not reach hypalign's MAP in its budget"))


if __name__ == "__main__":
    main()
