"""Hierarchy defaults on hierarchies nobody tuned for: hypalign's defaults against gensim's PoincareModel.

Every case of :data:`hypalign.data.hierarchy_generators.TEST_BED` (random recursive trees with four attachment
rules, balanced and very unbalanced trees, a deep path, DAGs with multiple parents; 100-5,000 nodes) plus WordNet
mammals and a GO sub-ontology (molecular function, below GO:0016787 hydrolase activity), at the dimensions given.
hypalign runs ``train_hierarchy`` with nothing but ``source``, ``dim`` and ``model`` set (every other option its
default: what ``hypalign train hierarchy --source ... --dim D --model poincare`` does). gensim runs with its documented
settings (``PoincareModel(relations, size=D, negative=10, burn_in=10)``, ``train(batch_size=10)``: alpha 0.1,
regularisation 1.0) and is evaluated after 50, 100, 200 and 300 epochs (``--gensim-epochs``); its best MAP and best
mean rank over those, and the time of its last evaluation, are what hypalign is compared with. Both are scored by
:func:`hypalign.eval.hierarchy.reconstruction` on all nodes (the paper's definition; gensim's float vectors read as
Poincaré c=1 points). gensim's curves are cached in ``--cache`` (JSON, keyed by case, dimension and epochs) so that
a rerun of hypalign's side does not pay for them again; ``--fresh`` ignores the cache.

    python benchmarks/hierarchy_sweep.py --dims 5                        # every case at dimension 5
    python benchmarks/hierarchy_sweep.py --dims 2,10 --cases rrt-first-half-400,dag-500,wordnet-mammals
    python benchmarks/hierarchy_sweep.py --only gensim                   # fill the cache only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hypalign.data.hierarchy import Hierarchy
from hypalign.data.hierarchy_generators import TEST_BED
from hypalign.data.hierarchy_sources import load_source
from hypalign.eval.hierarchy import reconstruction
from hypalign.geometry import PoincareBall

REAL = {"wordnet-mammals": "wordnet:mammal.n.01", "go-mf-hydrolase": "go:MF:GO:0016787"}
CASES = [*TEST_BED, *REAL]


def hierarchy_of(case: str) -> Hierarchy:
    return load_source(REAL[case]) if case in REAL else TEST_BED[case](0)


def run_gensim(h: Hierarchy, dim: int, checkpoints: list[int]) -> dict:
    """gensim's curve: ``[(epochs, seconds, map, mean_rank)]``, or ``{"error": ...}`` when it cannot train."""
    from gensim.models.poincare import PoincareModel

    relations = [(h.names[c], h.names[p]) for c, p in h.closure().tolist()]
    anc = h.ancestors()
    model = PoincareModel(relations, size=dim, negative=10, burn_in=10, seed=0, workers=1)
    curve, done, spent = [], 0, 0.0
    try:
        for e in checkpoints:
            t = time.perf_counter()
            model.train(epochs=e - done, batch_size=10, print_every=10**9)
            spent += time.perf_counter() - t
            done = e
            x = torch.from_numpy(np.stack([model.kv[n] for n in h.names]).astype(np.float64))
            r = reconstruction(x, anc, PoincareBall(c=1.0))
            curve.append((e, spent, r["map"], r["mean_rank"]))
            print(f"    gensim {e:4d} epochs {spent:7.1f} s  MAP {r['map']:.3f}  mean rank {r['mean_rank']:.2f}",
                  flush=True)
    except ValueError as exc:  # e.g. "Cannot sample 10 negative nodes from a set of 7" (deep paths)
        return {"error": str(exc).splitlines()[0][:120], "curve": curve}
    return {"curve": curve}


def run_hypalign(h: Hierarchy, source: str, dim: int, out: str) -> dict:
    import shutil

    from hypalign.recipes.registry import get_recipe

    recipe = get_recipe("hierarchy")
    shutil.rmtree(out, ignore_errors=True)
    cfg = recipe.config(source=source, dim=dim, model="poincare")
    train = recipe.train_config(out, progress=False)
    t = time.perf_counter()
    res = recipe.train(cfg, train, hierarchy=h)
    res["wall_s"] = time.perf_counter() - t
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--dims", default="5")
    ap.add_argument("--gensim-epochs", default="50,100,200,300")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "hypalign" / "gensim-sweep.json"))
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--only", choices=("gensim", "hypalign"), default=None)
    ap.add_argument("--out", default="/tmp/hypalign-bench-sweep")
    args = ap.parse_args()
    checkpoints = [int(e) for e in args.gensim_epochs.split(",")]
    cache_path = Path(args.cache)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() and not args.fresh else {}
    rows = []
    for case in args.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; expected one of {', '.join(CASES)}")
        h = hierarchy_of(case)
        n_pairs = int(sum(len(a) for a in h.ancestors()))
        for dim in [int(d) for d in args.dims.split(",")]:
            print(f"{case} (n={h.n_nodes}, closure {n_pairs}), dim {dim}", flush=True)
            key = f"{case}/{dim}/{args.gensim_epochs}"
            g = None
            if args.only != "hypalign":
                if key not in cache:
                    cache[key] = run_gensim(h, dim, checkpoints)
                    tmp = cache_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(cache, indent=1))
                    tmp.replace(cache_path)
                g = cache[key]
            elif key in cache:
                g = cache[key]
            if args.only == "gensim":
                continue
            r = run_hypalign(h, REAL.get(case, f"generated:{case}"), dim, f"{args.out}/{case}-{dim}")
            spent = r["train_seconds"] + r["init_seconds"]
            line = (f"  hypalign  MAP {r['map']:.3f}  mean rank {r['mean_rank']:.2f}  {spent:6.1f} s "
                    f"(plan {r.get('plan', '-')})")
            row = {"case": case, "dim": dim, "n": h.n_nodes, "pairs": n_pairs, "map": r["map"],
                   "mean_rank": r["mean_rank"], "seconds": spent, "plan": r.get("plan")}
            if g and g.get("curve"):
                gmap = max(c[2] for c in g["curve"])
                grank = min(c[3] for c in g["curve"])
                gsec = g["curve"][-1][1]
                ok = r["map"] >= gmap - 1e-9 and r["mean_rank"] <= grank + 1e-9 and spent <= gsec / 5
                line += (f" | gensim best MAP {gmap:.3f}, best mean rank {grank:.2f}, {gsec:.0f} s"
                         f"{' (stopped: ' + g['error'] + ')' if 'error' in g else ''} | time ratio "
                         f"{gsec / max(spent, 1e-9):.1f}x | {'target met' if ok else 'TARGET MISSED'}")
                row.update(gensim_map=gmap, gensim_mean_rank=grank, gensim_seconds=gsec, target_met=ok)
            elif g:
                line += f" | gensim cannot train this hierarchy: {g.get('error')}"
                row.update(gensim_error=g.get("error"))
            print(line, flush=True)
            rows.append(row)
    if rows:
        met = [r for r in rows if r.get("target_met")]
        compared = [r for r in rows if "target_met" in r]
        print(f"\ntarget (MAP >= gensim's best, mean rank <= gensim's best, <= 1/5 of its time) met on {len(met)} of "
              f"{len(compared)} compared cases")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sweep.json").write_text(json.dumps(rows, indent=1))
        print("\n| hierarchy | nodes | closure | dim | hypalign MAP / mean rank | time | stage kept | "
              "gensim best MAP / mean rank | gensim time | speed-up | target |")
        print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
        for r in rows:
            g = (f"{r['gensim_map']:.3f} / {r['gensim_mean_rank']:.2f} | {r['gensim_seconds']:.0f} s | "
                 f"{r['gensim_seconds'] / max(r['seconds'], 1e-9):.0f}x | {'met' if r['target_met'] else 'MISSED'}"
                 if "gensim_map" in r else "cannot train (negatives) | - | - | -")
            print(f"| {r['case']} | {r['n']} | {r['pairs']} | {r['dim']} | {r['map']:.3f} / {r['mean_rank']:.2f} | "
                  f"{r['seconds']:.1f} s | {r['plan']} | {g} |")


if __name__ == "__main__":
    main()
