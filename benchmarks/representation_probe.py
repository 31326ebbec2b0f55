"""Representation probe (issue 28): a pre-trained protein model's frozen per-protein embedding scored on GO function
prediction with the ProtCLIP evaluation — ``hypalign train protclip --encoder TOWER --encoder-freeze -1`` trains only
the projection heads (and the text side) on the frozen mean-pooled states, on a GO split (default ``small-hard``) —
beside ProtCLIP's own encoder (the residue CNN trained end to end; a reference run given with ``--reference``).

Towers: ``NAME=PATH`` where PATH is a DPLM-2 run (its sequence half), a protein-lm run or a Hugging Face ESM
directory, or ``NAME=random:D,LAYERS,HEADS`` — an untrained ESM trunk of that shape (seeded), the control that says
how much of a probe's figure the pre-training earned. Runs land in ``RUNS/probe-NAME-sSEED``; one that has its
``eval.json`` is read, not run again. Prints the test proteins' Fmax / MRR per ontology, with and without the
nearest-neighbour transfer blend, and each tower's train time.

    python benchmarks/representation_probe.py --runs /tmp/bench --seeds 0 \\
        --towers dplm2-bit=/tmp/bench/dplm2-bit-e4-s0,plm=/tmp/bench/plm-diffusion-s1500-s0,random=random:256,4,8 \\
        --reference cnn=/tmp/bench/small-hard-lorentz-s0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ONTS = ("BP", "MF", "CC")


def random_tower(out: Path, shape: str, seed: int) -> Path:
    """An untrained ESM trunk (protein-lm's layout) of ``D,LAYERS,HEADS`` saved as a Hugging Face directory."""
    import torch
    from transformers import EsmForMaskedLM

    from hypalign.recipes.protlm import write_tokenizer_files
    from hypalign.recipes.protlm.config import ProtLMConfig

    d, layers, heads = (int(x) for x in shape.split(","))
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    from transformers import EsmConfig

    EsmForMaskedLM(EsmConfig(**ProtLMConfig(d=d, layers=layers, heads=heads, max_len=512).esm_config())
                   ).save_pretrained(out)
    write_tokenizer_files(out)
    return out


def probe(runs: Path, name: str, tower: str, seed: int, split: str, extra: list[str]) -> Path:
    run = runs / f"probe-{name}-s{seed}"
    if (run / "eval.json").is_file():
        return run
    if tower.startswith("random:"):
        tower = str(random_tower(runs / f"random-tower-{tower[7:].replace(',', 'x')}-s{seed}", tower[7:], seed))
    cmd = [sys.executable, "-m", "hypalign", "train", "protclip", "--split", split, "--encoder", tower,
           "--encoder-freeze", "-1", "--eval-max-len", "514", "--seed", str(seed), "--no-progress", "-o", str(run),
           *extra]
    if (run / "config.json").is_file():
        cmd.append("--resume")
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=os.environ)
    return run


def row(name: str, run: Path) -> str:
    ev = json.loads((run / "eval.json").read_text())

    def cells(part: str, key: str) -> str:  # eval.json: {"test": {"BP/fmax": …}, "term_only": {"test": {…}}}
        test = ev["term_only"]["test"] if part == "term_only" else ev["test"]
        return " / ".join(f"{test[f'{o}/{key}']:.3f}" for o in ONTS)

    minutes = ev.get("train_seconds", float("nan")) / 60
    return (f"| {name} | {cells('blend', 'fmax')} | {cells('blend', 'mrr')} | {cells('term_only', 'fmax')} | "
            f"{cells('term_only', 'mrr')} | {minutes:.1f} min |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--towers", default="", help="NAME=PATH or NAME=random:D,LAYERS,HEADS, comma-separated pairs")
    ap.add_argument("--reference", default="", help="NAME=RUN of finished ProtCLIP runs to print beside them")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--split", default="small-hard")
    ap.add_argument("--extra", default="--threads 1", help="more arguments for `hypalign train protclip`")
    args = ap.parse_args()

    def pairs(text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for part in text.split(","):
            if "=" in part:
                out.append(tuple(part.split("=", 1)))  # type: ignore[arg-type]
            elif part and out:  # the commas of random:D,LAYERS,HEADS
                out[-1] = (out[-1][0], out[-1][1] + "," + part)
        return out

    lines = ["| tower | Fmax BP / MF / CC | MRR BP / MF / CC | model alone: Fmax | model alone: MRR | train |",
             "|---|---|---|---|---|---:|"]
    for name, run in pairs(args.reference):
        lines.append(row(f"{name} (reference)", Path(run)))
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, tower in pairs(args.towers):
            lines.append(row(f"{name} frozen, seed {seed}",
                             probe(args.runs, name, tower, seed, args.split, args.extra.split())))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
