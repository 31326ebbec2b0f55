"""Made-up protein backbones for the structure tests (the tokenizer's and DPLM-2's)."""

from __future__ import annotations

import numpy as np


def chain(n: int, seed: int) -> np.ndarray:
    """A made-up backbone ``(n, 4, 3)``: a wobbling helical CA trace (CA-CA ~3.8 Å), N and C placed along the
    bonds to the neighbouring CAs (so C(i)-N(i+1) stays well under the 2 Å of a chain break), O off C."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + 2, dtype=np.float64)
    trace = np.stack([2.3 * np.cos(1.75 * t), 2.3 * np.sin(1.75 * t), 1.5 * t], 1) + rng.normal(0, 0.2, (n + 2, 3))
    ca, prev, nxt = trace[1:-1], trace[:-2], trace[2:]
    perp = np.cross(nxt - ca, prev - ca)
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    n_at = ca + 0.38 * (prev - ca) + 0.3 * perp
    c_at = ca + 0.38 * (nxt - ca) - 0.3 * perp
    o_at = c_at + 1.23 * perp
    return np.stack([n_at, ca, c_at, o_at], 1)


#: the options of a tiny structure tokenizer for tests
TINY = ["--d", "16", "--heads", "2", "--k", "4", "--mp-layers", "1", "--enc-layers", "0", "--dec-layers", "1",
        "--bits", "4", "--crop", "16", "--batch-size", "2", "--min-length", "8", "--eval-chains", "3"]
