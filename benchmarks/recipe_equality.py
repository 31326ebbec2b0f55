"""Same seed, same numbers: train each recipe with this checkout and with another version of hypalign (e.g. the
commit before a refactor, checked out with `git worktree add /tmp/base REV`) and compare eval.json and the weights.

    python benchmarks/recipe_equality.py --base-src /tmp/base/src [--out /tmp/eq] [--protclip-steps 200]

Both versions run through their own command line with the same options (``--threads 1`` each, so CPU reductions run
in the same order). Prints, per recipe, the headline figures and whether every eval.json figure and every weight is
bit-identical; exit code 1 when any differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1] / "src"


def hypalign(src: Path, args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    r = subprocess.run([sys.executable, "-m", "hypalign.cli.main", *args], env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{src}: hypalign {' '.join(args)} failed:\n{r.stderr[-2000:]}")


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and "seconds" not in k and not k.endswith("_per_s"):
            out[prefix + k] = v
    return out


def weights(run: Path) -> dict[str, np.ndarray]:
    if (run / "embeddings.npy").is_file():
        return {"embeddings": np.load(run / "embeddings.npy")}
    from safetensors.numpy import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-src", type=Path, required=True, help="the other version's src/ directory")
    ap.add_argument("--out", type=Path, default=Path("/tmp/recipe-equality"))
    ap.add_argument("--protclip-steps", type=int, default=200, help="0 skips ProtCLIP (real data, ~15 min)")
    args = ap.parse_args()
    common = ["--threads", "1", "--json", "--no-progress"]
    jobs = {
        "hypvit": ["train", "hypvit", "--epochs", "3", *common],
        "hierarchy (nll)": ["hierarchy", "embed", "wordnet:mammal.n.01", "--epochs", "30", "--dim", "5", "--threads",
                            "1", "--json"],
    }
    if args.protclip_steps:
        jobs["protclip"] = ["train", "protclip", "--max-steps", str(args.protclip_steps), "--eval-every", "0",
                            "--seed", "0", *common]
    bad = 0
    for name, cmd in jobs.items():
        runs = {}
        for tag, src in (("base", args.base_src), ("this", HERE)):
            run = args.out / f"{name.split()[0]}-{tag}"
            subprocess.run(["rm", "-rf", str(run)], check=True)
            hypalign(src, [*cmd, "-o", str(run)])
            runs[tag] = run
        ea, eb = (flat(json.loads((runs[t] / "eval.json").read_text())) for t in ("base", "this"))
        wa, wb = weights(runs["base"]), weights(runs["this"])
        same_eval = ea == eb
        same_w = wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
        bad += not (same_eval and same_w)
        head = {k: round(v, 4) for k, v in ea.items() if k in ("recall@1", "map", "mean_rank", "test/fmax", "test/mrr",
                                                               "steps")}
        print(f"{name}: {head}; eval.json figures equal: {same_eval} ({len(ea)}); weights equal: {same_w}",
              flush=True)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
