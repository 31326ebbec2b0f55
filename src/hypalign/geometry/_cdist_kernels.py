"""numba kernel for the refinement test of :meth:`hypalign.geometry.base.Manifold.cdist` on the CPU.

``count_unreliable(q, bx, by, thr, floor, count)``: for every row ``i`` of the factor product ``q`` (a row chunk of the
all-pairs matrix, before the finish), ``count[i] = #{j : q_ij < thr * (bx_i . by_j) or q_ij < floor}`` — the entries
whose product may have lost the target precision (each geometry's ``_cdist_bound_factors`` bounds the rounding
error of ``q_ij`` by a small multiple of ``eps * bx_i . by_j``). One vectorised read of the block, no temporary; the
caller locates the flagged columns in the few rows with a non-zero count.
"""

from __future__ import annotations

import numba


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def count_unreliable(q, bx, by_t, thr, floor, count):  # pragma: no cover - compiled
    n, m = q.shape
    r = bx.shape[1]
    for i in numba.prange(n):
        acc = 0
        if r == 2:  # every geometry's bound has rank 1 or 2: the loop over j vectorises
            a0, a1 = bx[i, 0] * thr, bx[i, 1] * thr
            for j in range(m):
                v = q[i, j]
                acc += (v < a0 * by_t[0, j] + a1 * by_t[1, j]) | (v < floor)
        else:
            for j in range(m):
                b = 0.0
                for k in range(r):
                    b += bx[i, k] * by_t[k, j]
                v = q[i, j]
                acc += (v < thr * b) | (v < floor)
        count[i] = acc
