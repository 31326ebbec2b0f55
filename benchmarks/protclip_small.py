"""ProtCLIP CPU default on the small splits: the model (hyperbolic and spherical, several seeds) against
term frequency, DIAMOND, DIAMOND blended with frequency, and model + DIAMOND (issue 6 §6).

    python benchmarks/protclip_small.py --splits small-hard --geometries lorentz sphere --seeds 0 1 2
    python benchmarks/protclip_small.py --splits small-hard --seeds 0 --epochs 1      # a quick look
    python benchmarks/protclip_small.py --splits small-nohit --geometries lorentz --seeds 0
    python benchmarks/protclip_small.py --encoder RUN --tag=-plm --geometries lorentz  # a pre-trained tower

Each run trains with `train_protclip` (the same code as `hypalign train protclip`) into
``--runs/SPLIT-GEOMETRY-sSEED`` and reports test Fmax/MRR per ontology: the model (term scores blended
with nearest-neighbour transfer in its own space, as `hypalign predict` scores), its term scores alone,
and "model + DIAMOND" (`blend_with_diamond`: weights per identity group of DIAMOND's best hit, chosen by
Fmax on the validation proteins, as for the DIAMOND + frequency baseline). Rows marked ``[no hit, N]``: the same
methods on the N test proteins without any DIAMOND hit in train (e <= 1e-3), where homology has nothing to give.
The table is printed (and ``--json`` rewritten) after every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from hypalign.data.go_split import GOSplitData, prepare_go_split
from hypalign.eval.baselines import blend_with_diamond, run_baselines, subset_metrics
from hypalign.eval.function import summarise_metrics
from hypalign.recipes.protclip import ProtCLIPConfig, load_protclip_run, run_scores, train_protclip
from hypalign.train import TrainConfig

ONTS = ("BP", "MF", "CC")


def fmt(vals: list[float]) -> str:
    return f"{vals[0]:.3f}" if len(vals) == 1 else f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def add(rows: dict, name: str, metrics: dict[str, float]) -> None:
    per = rows.setdefault(name, {o: {"fmax": [], "mrr": []} for o in ONTS})
    for o in ONTS:
        per[o]["fmax"].append(metrics.get(f"{o}/fmax", float("nan")))
        per[o]["mrr"].append(metrics.get(f"{o}/mrr", float("nan")))


def add_no_hit(rows: dict, gsd: GOSplitData, no_hit, name: str, test_scores: dict) -> None:
    """The row ``name [no hit]``: ``test_scores`` ({ontology: matrix}) on the test proteins without a DIAMOND hit."""
    if not no_hit.any():
        return
    per = subset_metrics(gsd, {name: test_scores}, no_hit)[name]
    add(rows, f"{name} [no hit, {int(no_hit.sum())}]", {f"{o}/{k}": v for o, m in per.items() for k, v in m.items()})


def table(split: str, seeds: list[int], rows: dict) -> None:
    print(f"\n{split} (test; mean ± std over the seeds run so far of {seeds} for the models)")
    print("| method | Fmax BP | Fmax MF | Fmax CC | MRR BP | MRR MF | MRR CC | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for name, per in rows.items():
        print(f"| {name} | " + " | ".join(fmt(per[o]["fmax"]) for o in ONTS) + " | "
              + " | ".join(fmt(per[o]["mrr"]) for o in ONTS) + f" | {len(per['BP']['fmax'])} |", flush=True)


def rescore(run: Path, gsd: GOSplitData) -> tuple[dict, dict]:
    """The metrics and valid/test GO scores of a finished run (``--rescore``), as `train_protclip` makes them."""
    model, cfg = load_protclip_run(run)
    _, terms, scores = run_scores(model, cfg, gsd, ("valid", "test"))
    out = json.loads((run / "eval.json").read_text())
    out.update({p: summarise_metrics(gsd, p, scores[p]) for p in scores},
               term_only={"test": summarise_metrics(gsd, "test", terms["test"])})
    return out, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", nargs="+", default=["small-hard"])
    ap.add_argument("--geometries", nargs="+", default=["lorentz", "sphere"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--objectives", default=ProtCLIPConfig.objectives, help="as `train protclip --objectives`")
    ap.add_argument("--homology-head", action="store_true", help="as `train protclip --homology-head`")
    ap.add_argument("--homology-remote", type=float, default=ProtCLIPConfig.homology_remote,
                    help="as `train protclip --homology-remote`")
    ap.add_argument("--encoder", default=ProtCLIPConfig.encoder,
                    help="as `train protclip --encoder` (cnn, an ESM-2 directory or a protein-lm run)")
    ap.add_argument("--tag", default="", help="appended to each run's directory name and table label")
    ap.add_argument("--runs", default="runs/bench-protclip")
    ap.add_argument("--rescore", action="store_true", help="score runs that already finished instead of training")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    report: dict = {}
    for split in args.splits:
        gsd = prepare_go_split(split)
        base = run_baselines(gsd, "test", say=lambda m: print("  " + m, flush=True), aupr=False)
        rows: dict[str, dict[str, dict[str, list[float]]]] = {}
        for name, per in base["metrics"].items():
            rows[name] = {o: {"fmax": [per[o]["fmax"]], "mrr": [per[o]["mrr"]]} for o in ONTS}
        no_hit = base["groups"]["test"] < 0  # the test proteins DIAMOND finds nothing for in train
        for name in base["metrics"]:
            add_no_hit(rows, gsd, no_hit, name, base["scores"][name])
        for seed in args.seeds:  # seeds outermost: a cut-short run still has every geometry once
            for geom in args.geometries:
                run = Path(args.runs) / f"{split}-{geom}{args.tag}-s{seed}"
                t = time.perf_counter()
                cfg = ProtCLIPConfig(split=split, geometry=geom, objectives=args.objectives,
                                     homology_head=args.homology_head, homology_remote=args.homology_remote,
                                     encoder=args.encoder)
                tc = TrainConfig(run_dir=str(run), epochs=args.epochs, lr=1e-3, warmup_steps=50, grad_clip=1.0,
                                 eval_every=0, progress=False, seed=seed, log_every=50)
                if args.rescore and (run / "eval.json").is_file():  # a finished run: score it again
                    out, scores = rescore(run, gsd)
                    print(f"  {split} {geom} seed {seed}: rescored {run} (trained in {out['train_seconds']:.0f} s)",
                          flush=True)
                else:
                    holder: dict = {}
                    out = train_protclip(cfg, tc, gsd=gsd, keep_task=holder,
                                         say=lambda m: print("  " + m, flush=True))
                    scores = holder["scores"]  # the model's final valid/test GO scores (term scores + transfer)
                    print(f"  {split} {geom} seed {seed}: trained in {out['train_seconds']:.0f} s "
                          f"(wall {time.perf_counter() - t:.0f} s)", flush=True)
                label = f"model ({geom}{args.tag})"
                add(rows, label, out["test"])
                add(rows, f"{label}, term scores only", out["term_only"]["test"])
                blended: dict = {}
                comb, alphas = blend_with_diamond(gsd, base, scores, keep_scores=blended)
                print(f"  model + DIAMOND weights per identity group: {alphas}", flush=True)
                add(rows, f"{label} + DIAMOND", comb)
                add_no_hit(rows, gsd, no_hit, label, scores["test"])
                add_no_hit(rows, gsd, no_hit, f"{label} + DIAMOND", blended)
                table(split, args.seeds, rows)
                report[split] = rows
                if args.json:
                    Path(args.json).write_text(json.dumps(report, indent=2))
        table(split, args.seeds, rows)
        report[split] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
