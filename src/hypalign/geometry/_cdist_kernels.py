"""numba kernel for the refinement test of :meth:`hypalign.geometry.base.Manifold.cdist` on the CPU.

``count_unreliable(q, bx, by, thr, floor, count)``: for every row ``i`` of the factor product ``q`` (a row chunk of the
all-pairs matrix, before the finish), ``count[i] = #{j : q_ij < thr * (bx_i . by_j) or q_ij < floor}`` — the entries
whose product may have lost the target precision (each geometry's ``_cdist_bound_factors`` bounds the rounding
error of ``q_ij`` by a small multiple of ``eps * bx_i . by_j``). One vectorised read of the block, no temporary; the
caller locates the flagged columns in the few rows with a non-zero count.

``hyperbolic_finish(q, bx, by, thr, floor, scale, check, count, buf)``: the same test and, in the same pass, the
hyperbolic finish of both models in place: ``q = sinh^2(sqrt(c) d / 2)`` becomes ``d = scale * arccosh(1 + 2q)``
(``scale = 1 / sqrt(c)``), written ``scale * log(u)`` with ``u = 1 + 2(q + sqrt(q^2 + q))``; a flagged entry is set to
``-1`` instead (distances are >= 0) so that :func:`locate_flagged` finds it. ``log`` is computed from ``u``'s float32
bits (exponent; mantissa halved above sqrt 2) and a degree-7 polynomial in ``m - 1`` fitted to ``log m`` on
``[1/sqrt 2, sqrt 2)`` (relative error 1.4e-6): it vectorises, where numba's ``log`` is a scalar call without SVML.
For ``q >= 1e18``, where ``u`` would overflow, ``u = q`` and ``log 4`` is added. Relative error against float64:
<= 6e-6 for every ``q`` above the floor the refinement keeps (float32 ``q >= 3.6e-5``; the tests sweep ``q`` from
there to 2.5e38). float32 blocks only.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# log(m) ~ sum_k LOG_POLY[k] (m - 1)^(k + 1) on [1/sqrt 2, sqrt 2): least squares in the relative sense on Chebyshev
# nodes, degree 7 (max relative error of the float32 coefficients 1.4e-6)
_L1, _L2, _L3, _L4, _L5, _L6, _L7 = (np.float32(v) for v in (
    1.000001072883606, -0.5000084638595581, 0.3331342935562134, -0.2492186278104782, 0.20529605448246002,
    -0.18560294806957245, 0.11623602360486984))
_LN2 = np.float32(math.log(2.0))


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


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def hyperbolic_finish(q, bx, by_t, thr, floor, scale, check, count, buf):  # pragma: no cover - compiled
    n, m = q.shape
    sc = np.float32(scale)
    one, two, zero = np.float32(1.0), np.float32(2.0), np.float32(0.0)
    floor32 = np.float32(floor)
    big = np.float32(1e18)  # from here 1 + 2(q + sqrt(q^2 + q)) = 4q + 2 would overflow: u = q, log 4 added
    for i in numba.prange(n):
        row = q[i]
        u = buf[numba.get_thread_id()]
        bits = u.view(np.int32)
        acc = np.float32(0.0)  # a float count keeps every lane float32 (exact: rows are far below 2^24 entries)
        if check:
            a0, a1 = np.float32(bx[i, 0] * thr), np.float32(bx[i, 1] * thr)
            b0, b1 = by_t[0], by_t[1]
            for j in range(m):
                v = row[j]
                bad = v < max(a0 * b0[j] + a1 * b1[j], floor32)
                acc += one if bad else zero
                w = max(v, zero)
                u[j] = np.float32(-1.0) if bad else (one + two * (w + np.sqrt(w * w + w)) if w < big else w)
        else:
            for j in range(m):
                w = max(row[j], zero)
                u[j] = one + two * (w + np.sqrt(w * w + w)) if w < big else w
        for j in range(m):
            b = bits[j]
            e = ((b >> 23) & 255) - 127
            mb = (b & 0x7FFFFF) | 0x3F800000
            hi = mb > 0x3FB504F3  # mantissa above sqrt 2: halve it
            e = e + (1 if hi else 0)
            flagged = b < 0  # u = -1
            bits[j] = mb - (0x800000 if hi else 0)
            t = u[j] - one
            p = t * (_L1 + t * (_L2 + t * (_L3 + t * (_L4 + t * (_L5 + t * (_L6 + t * _L7))))))
            e = e + (2 if row[j] >= big else 0)  # u = q there: log(4q + 2) = log q + log 4 (to 1 / (2q))
            row[j] = np.float32(-1.0) if flagged else (np.float32(e) * _LN2 + p) * sc
        count[i] = np.int64(acc)


@numba.njit(parallel=True, cache=True, nogil=True)
def locate_flagged(q, count, offsets, rows, cols):  # pragma: no cover - compiled
    """The ``(row, column)`` of every entry :func:`hyperbolic_finish` left at -1, row ``i``'s at
    ``offsets[i]:offsets[i] + count[i]`` (``offsets`` the exclusive cumulative sum of ``count``)."""
    n, m = q.shape
    for i in numba.prange(n):
        if count[i] == 0:
            continue
        k = offsets[i]
        row = q[i]
        for j in range(m):
            if row[j] < 0:
                rows[k] = i
                cols[k] = j
                k += 1


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def pair_moments(x, y, rows, cols, out):  # pragma: no cover - compiled
    """For every pair ``k`` (``r, c = rows[k], cols[k]``): ``out[k] = (|x_r - y_c|^2, (x_r - y_c) . (x_r + y_c),
    |x_r|^2, |y_c|^2)``, accumulated in float64 from the coordinates' differences (no cancellation): what the stable
    paired distances of the Poincaré ball and the hyperboloid are made of (``dist`` in ``poincare.py`` /
    ``lorentz.py``). One pass over the pairs, ``O(pairs * D)``, no gathered copies of the rows."""
    d = x.shape[1]
    for k in numba.prange(rows.shape[0]):
        xr, yc = x[rows[k]], y[cols[k]]
        acc_s, acc_p, acc_x, acc_y = 0.0, 0.0, 0.0, 0.0
        for j in range(d):
            a, b = np.float64(xr[j]), np.float64(yc[j])
            t = a - b
            acc_s += t * t
            acc_p += t * (a + b)
            acc_x += a * a
            acc_y += b * b
        out[k, 0] = acc_s
        out[k, 1] = acc_p
        out[k, 2] = acc_x
        out[k, 3] = acc_y
