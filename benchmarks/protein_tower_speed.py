"""Protein embedding speed of ProtCLIP's two towers on CPU: the residue CNN (the default) against a pre-trained
protein language model (``--encoder RUN`` of ``hypalign train protein-lm``), through the same inference path
``hypalign predict`` uses (:func:`hypalign.recipes.protclip.scoring.embed_protein_spaces`: batches sorted by length,
sequences up to ``--max-len`` tokens), and one training step of each (forward + backward of a batch of 64 random
256-token crops, as the CPU default trains).

    python benchmarks/protein_tower_speed.py --lm RUN [--n 500] [--split small-hard] [--threads 2]

The heads are untrained (speed does not depend on their weights). Prints proteins per second and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", required=True, help="a protein-lm run (or its model/ directory)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--split", default="small-hard")
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from hypalign.data.go_split import prepare_go_split
    from hypalign.encoders.protein import tokenize
    from hypalign.models.protclip import ProtCLIP
    from hypalign.recipes.protclip.config import ProtCLIPConfig
    from hypalign.recipes.protclip.scoring import embed_protein_spaces

    gsd = prepare_go_split(args.split)
    seqs = gsd.sequences("test")[: args.n]
    print(f"{len(seqs)} test proteins of {args.split}, mean length {np.mean([len(s) for s in seqs]):.0f}")
    lm = ProtCLIPConfig(encoder=args.lm)
    towers = {"cnn": ProtCLIP(encoder="cnn", n_terms=10), "lm": ProtCLIP(encoder="esm", encoder_path=lm.encoder_path,
                                                                         n_terms=10)}
    rng = np.random.default_rng(0)
    crops = tokenize([seqs[i % len(seqs)] for i in range(64)], 256, crop="random", rng=rng)
    rates: dict[str, tuple[float, float]] = {}
    for name, model in towers.items():
        n_params = sum(p.numel() for p in model.protein_encoder.parameters())
        model.eval()
        best = min(_timed(lambda m=model: embed_protein_spaces(m, seqs, args.max_len)) for _ in range(args.repeats))
        model.train()
        step = min(_timed(lambda m=model: m.encode_protein(*crops).sum().backward()) for _ in range(args.repeats))
        rates[name] = (len(seqs) / best, 64 / step)
        print(f"{name}: {n_params / 1e6:.2f} M encoder parameters; embedding {rates[name][0]:.1f} proteins/s; "
              f"training step {rates[name][1]:.1f} proteins/s (one encoder pass, forward + backward)", flush=True)
    ratio = [rates["lm"][k] / rates["cnn"][k] for k in (0, 1)]
    print(f"lm / cnn: embedding {ratio[0]:.2f}x, training {ratio[1]:.2f}x")


def _timed(fn: object) -> float:
    t = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
