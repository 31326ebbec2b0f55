"""Molecule embedding speed of InfoAlign's CPU default (issue 26 target: >= 500 molecules/s on CPU), against the
peer every baseline row pays: RDKit's ECFP4 (Morgan radius 2, 1,024 bits) from the same SMILES.

    python benchmarks/infoalign_speed.py [--sets approved-drugs lipophilicity] [--threads 1 2] [--n 2000]

Both sides start from SMILES strings. InfoAlign runs the whole path of ``hypalign embed``
(:func:`hypalign.recipes.infoalign.evaluation.embed_smiles`: RDKit parsing, atom/bond features, torch-geometric
batching, the 5-layer 300-dim GIN with its virtual node and the bottleneck's μ; and ``--aligned``, the alignment
head's Lorentz points as well). ECFP4: RDKit parsing + ``morgan_fingerprints``. The model is the default
architecture, randomly initialised: speed does not depend on the weights. Molecule sets are the packaged ones
(fetched once by package name, as `hypalign train infoalign` does): approved drugs (drug-sized: the target's
molecules) and the downstream property sets. Prints molecules per second, heavy atoms per molecule and the ratio; best
of ``--repeats``. Then, per set on one thread, where InfoAlign's time goes: RDKit parsing, the graphs
(torch-geometric's ``from_rdmol``), batching, the encoder forward (GIN + bottleneck).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["approved-drugs", "lipophilicity", "freesolv"],
                    help="approved-drugs and/or downstream property sets (lipophilicity, esol, freesolv)")
    ap.add_argument("--n", type=int, default=2000, help="molecules per set (the first N; fewer if the set is smaller)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from torch_geometric.data import Batch

    from hypalign.data.molecule_benchmarks import downstream_sets
    from hypalign.data.molecule_sources import fetch_sources, read_approved_drugs
    from hypalign.data.molecules import mol_graphs, morgan_fingerprints, parse_smiles
    from hypalign.models.infoalign import InfoAlign
    from hypalign.recipes.infoalign.config import InfoAlignConfig
    from hypalign.recipes.infoalign.evaluation import embed_smiles

    d = fetch_sources(print)
    sets: dict[str, list[str]] = {}
    down = {s.name: s for s in downstream_sets(d)}
    for name in args.sets:
        if name == "approved-drugs":
            sets[name] = [smi for _, smi in read_approved_drugs(d)]
        elif name in down:
            sets[name] = list(down[name].smiles)
        else:
            raise SystemExit(f"--sets: unknown set {name!r} (approved-drugs, {', '.join(down)})")
    cfg = InfoAlignConfig()
    torch.manual_seed(0)
    model = InfoAlign({"fingerprint": cfg.fp_bits}, cfg.layers, cfg.dim, cfg.dropout, cfg.readout,
                      cfg.decoder_hidden, cfg.decoder_dropout, align_dim=cfg.align_dim, n_context=10,
                      align_geometry="lorentz").eval()
    print(f"InfoAlign default: {cfg.layers} layers x {cfg.dim} dims, readout {cfg.readout}; "
          f"{sum(p.numel() for p in model.encoder.parameters()) / 1e6:.2f} M encoder parameters; "
          f"batches of {args.batch_size}")
    print("| set | molecules | heavy atoms / molecule | threads | InfoAlign μ (mol/s) | InfoAlign aligned (mol/s) "
          "| ECFP4 (mol/s) | InfoAlign / ECFP4 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, smiles in list(sets.items()):
        mols, kept = parse_smiles(smiles, name, skip_invalid=True)
        smiles = sets[name] = [smiles[i] for i in kept][: args.n]
        atoms = float(np.mean([m.GetNumAtoms() for m in mols[: len(smiles)]]))
        for threads in args.threads:
            torch.set_num_threads(threads)
            embed_smiles(model, smiles[: args.batch_size], args.batch_size)  # warm-up
            with torch.inference_mode():
                mu = min(_timed(lambda s=smiles: embed_smiles(model, s, args.batch_size))
                         for _ in range(args.repeats))
                al = min(_timed(lambda s=smiles: embed_smiles(model, s, args.batch_size, aligned=True))
                         for _ in range(args.repeats))
            fp = min(_timed(lambda s=smiles: morgan_fingerprints(parse_smiles(s)[0], 2, cfg.fp_bits))
                     for _ in range(args.repeats))
            n = len(smiles)
            print(f"| {name} | {n} | {atoms:.1f} | {threads} | {n / mu:.0f} | {n / al:.0f} | {n / fp:.0f} "
                  f"| {fp / mu:.3f}x |", flush=True)

    print("\nWhere InfoAlign's time goes, one thread (seconds for the whole set, best of the repeats):")
    print("| set | molecules | parse | graphs | batching | encoder | total |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    torch.set_num_threads(1)
    for name, smiles in sets.items():
        best = [float("inf")] * 4
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            mols = parse_smiles(smiles, name)[0]
            t1 = time.perf_counter()
            graphs = mol_graphs(mols)
            t2 = time.perf_counter()
            batches = [Batch.from_data_list(graphs[s : s + args.batch_size])
                       for s in range(0, len(graphs), args.batch_size)]
            t3 = time.perf_counter()
            with torch.inference_mode():
                for b in batches:
                    model.encode(b)
            t4 = time.perf_counter()
            best = [min(a, b) for a, b in zip(best, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True)]
        print(f"| {name} | {len(smiles)} | " + " | ".join(f"{v:.2f}" for v in best) + f" | {sum(best):.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
