"""GO function prediction baselines on the small splits: term frequency, DIAMOND transfer, and DIAMOND
blended with frequency (alpha chosen on valid), per ontology — the rows every ProtCLIP model is compared
with (issue 6 §6). Prints one table per split next to the figures the issue lists.

    python benchmarks/protclip_baselines.py                       # small-random and small-hard
    python benchmarks/protclip_baselines.py --splits small-hard --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

from hypalign.data.go_split import prepare_go_split
from hypalign.eval.baselines import run_baselines

# issue 6 §6: (Fmax BP, MF, CC), (MRR BP, MF, CC)
REFERENCE = {
    ("small-random", "frequency"): ((0.46, 0.36, 0.62), (0.10, 0.17, 0.38)),
    ("small-random", "diamond"): ((0.88, 0.91, 0.86), (0.65, 0.83, 0.72)),
    ("small-hard", "frequency"): ((0.34, 0.29, 0.49), (0.06, 0.08, 0.30)),
    ("small-hard", "diamond"): ((0.19, 0.22, 0.18), (0.12, 0.15, 0.33)),
    ("small-hard", "diamond+frequency"): ((0.39, 0.38, 0.53), (0.12, 0.15, 0.33)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", nargs="+", default=["small-random", "small-hard"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write all metrics here")
    args = ap.parse_args()
    everything = {}
    for name in args.splits:
        t = time.perf_counter()
        gsd = prepare_go_split(name)
        print(f"{name}: {len(gsd.rows['train'])} train / {len(gsd.rows['valid'])} valid / {len(gsd.rows['test'])} "
              f"test proteins; labels ready in {time.perf_counter() - t:.0f} s", flush=True)
        res = run_baselines(gsd, "test", threads=args.threads, say=lambda m: print("  " + m, flush=True))
        print(f"\n{name}: DIAMOND finds a hit for {res['coverage']:.1%} of test proteins; blend alpha "
              + ", ".join(f"{o} {a}" for o, a in res["alpha"].items()))
        print("| method | Fmax BP / MF / CC | AUPR BP / MF / CC | MRR BP / MF / CC | hits@10 BP / MF / CC "
              "| issue: Fmax; MRR |")
        print("|---|---|---|---|---|---|")
        for method, per in res["metrics"].items():
            cells = [" / ".join(f"{per[o][k]:.3f}" for o in ("BP", "MF", "CC"))
                     for k in ("fmax", "aupr", "mrr", "hits@10")]
            ref = REFERENCE.get((name, method))
            ref_s = "; ".join(" / ".join(f"{v:.2f}" for v in r) for r in ref) if ref else "–"
            print(f"| {method} | " + " | ".join(cells) + f" | {ref_s} |")
        print(f"({time.perf_counter() - t:.0f} s)\n", flush=True)
        everything[name] = {"metrics": res["metrics"], "alpha": res["alpha"], "diamond_coverage": res["coverage"]}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(everything, fh, indent=2)


if __name__ == "__main__":
    main()
