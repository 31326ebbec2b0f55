"""How far the exact four-point δ reaches on this machine (figures in docs/benchmarks.md).

    python benchmarks/delta_exact.py            # about 9 minutes on 2 cores
    python benchmarks/delta_exact.py --quick    # n = 200, seconds

Data: Gaussian points in R^16 (Euclidean metric; concentrated distances) and Poincaré points
(expmap0 of Gaussian tangents, Poincaré metric), in 16-d and in the 2-d disk at large radius.
Prints the exact δ, the base-point δ at point 0 (a lower bound) and the wall time of ``delta_exact``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from hypalign.eval.delta import delta_basepoint, delta_exact, distance_matrix
from hypalign.geometry import PoincareBall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    # compile the kernels once (numba caches them on disk)
    delta_exact(distance_matrix(rng.normal(size=(20, 4))))
    delta_exact(distance_matrix(rng.normal(size=(20, 4))), "pruned")

    def gauss(n: int) -> np.ndarray:
        return distance_matrix(rng.normal(size=(n, 16)))

    def poincare(n: int, dim: int = 16, scale: float = 0.8) -> np.ndarray:
        x = PoincareBall(1.0).expmap0(torch.from_numpy(rng.normal(size=(n, dim)) * scale)).numpy()
        return distance_matrix(x, "poincare", 1.0)

    cases = (
        [("Gaussian R^16, euclidean", 200, gauss)]
        if args.quick
        else [
            ("Gaussian R^16, euclidean", 500, gauss),
            ("Gaussian R^16, euclidean", 1000, gauss),
            ("Poincaré 16-d, c = 1", 500, poincare),
            ("Poincaré 16-d, c = 1", 1000, poincare),
            ("Poincaré disk 2-d, large radius, c = 1", 1000, lambda n: poincare(n, 2, 3.0)),
        ]
    )
    print("| data | n | exact δ | base-point δ | time (s) |")
    print("|---|---:|---:|---:|---:|")
    for label, n, make in cases:
        d = make(n)
        t0 = time.perf_counter()
        exact = delta_exact(d)
        elapsed = time.perf_counter() - t0
        print(f"| {label} | {n} | {exact:.5f} | {delta_basepoint(d):.5f} | {elapsed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
