"""The structure tokenizer's CPU default on the packaged PDB chains (small cluster split): reconstruction of the
held-out chains from the 13-bit codes and from the continuous codes, code usage, tokenizing speed; and tmtools'
TM-score checked against Debian's ``TMscore`` on a few chains when it is installed (``apt-get install tm-align``).

Each run is ``hypalign train structure-tokenizer [--alphabet 3di] --seed S -o RUNS/structok-{lfq|3di}-small-sS``
(every other option at its default; a finished run is reused): ``lfq`` the learned 13-bit codes, ``3di`` foldseek's
fixed 20-letter alphabet into the same decoder (how much backbone each alphabet's tokens determine).

    python benchmarks/structure_tokenizer.py --runs runs/bench --seeds 0
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from _runs import mean_std, run_or_reuse

COLUMNS = [("rmsd_q_median", "RMSD quantised (Å, median)"), ("rmsd_c_median", "RMSD continuous"),
           ("tm_q_median", "TM quantised (median)"), ("tm_c_median", "TM continuous"), ("gdt_ts_q", "GDT-like q"),
           ("err_helix", "err helix"), ("err_strand", "err strand"), ("err_other", "err other"),
           ("perplexity", "code perplexity"), ("codes_used", "codes used"),
           ("tokenize_chains_per_s", "tokenize chains/s"), ("chains_per_s", "encode+decode chains/s")]


def check_tmscore(n: int = 5) -> None:
    """tmtools (known correspondence) vs Debian's TMscore on ``n`` test chains against a perturbed copy."""
    exe = shutil.which("TMscore")
    if exe is None:
        print("TMscore not installed (apt-get install tm-align): tmtools check left out")
        return
    from hypalign.data.structures import load_structures, read_split_ids, split_dir, write_backbone_pdb
    from hypalign.eval.structure import tm_score

    ss = load_structures()
    row = {c: i for i, c in enumerate(ss.ids)}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        for cid in read_split_ids(split_dir("small"), "test")[:n]:
            i = row[cid]
            x = ss.backbone(i)
            y = x + rng.normal(0, 1.5, x.shape).astype(np.float32)
            write_backbone_pdb(Path(d) / "x.pdb", x, ss.sequence(i))
            write_backbone_pdb(Path(d) / "y.pdb", y, ss.sequence(i))
            out = subprocess.run([exe, str(Path(d) / "y.pdb"), str(Path(d) / "x.pdb")], capture_output=True,
                                 text=True).stdout
            ref = float(next(ln for ln in out.splitlines() if ln.startswith("TM-score")).split("=")[1].split()[0])
            print(f"{cid}: tmtools {tm_score(y, x, ss.sequence(i)):.4f}  TMscore {ref:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/bench-structok")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--alphabets", default="lfq,3di")
    ap.add_argument("--only-table", action="store_true")
    args = ap.parse_args()
    rows = []
    for alphabet in args.alphabets.split(","):
        res = [r for seed in (int(s) for s in args.seeds.split(","))
               if (r := run_or_reuse(Path(args.runs) / f"structok-{alphabet}-small-s{seed}",
                                     ["structure-tokenizer", "--alphabet", alphabet, "--seed", str(seed)],
                                     train=not args.only_table)) is not None]
        if res:
            rows.append((alphabet, res))
    print("\n| tokens | seeds | " + " | ".join(name for _, name in COLUMNS) + " | train time |")
    print("|---|---:|" + "---:|" * (len(COLUMNS) + 1))
    for alphabet, res in rows:
        cells = [mean_std(res, k, digits=3) if k in res[0] else "–" for k, _ in COLUMNS]
        t = np.mean([r["train_seconds"] for r in res]) / 60
        print(f"| {alphabet} | {len(res)} | " + " | ".join(cells) + f" | {t:.1f} min |")
    check_tmscore()


if __name__ == "__main__":
    main()
