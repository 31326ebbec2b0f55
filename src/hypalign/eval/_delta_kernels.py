"""Compiled kernels (numba) for δ-hyperbolicity. Pure loops; the maths is in :mod:`hypalign.eval.delta`."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_IB = 32  # rows of the (max, min) product kept in one register/L1 tile
_JB = 256  # columns of that tile
_NEG = -1.0e300  # finite "minus infinity": fastmath assumes no infinities
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # fastmath without nnan/ninf
_PAIR_BLOCK = 64  # pairs of the exact scan processed in parallel


@njit(parallel=True, fastmath=_FAST, cache=True)
def maxmin_excess(a: np.ndarray) -> float:  # pragma: no cover - compiled
    """``max_{i,j} ( max_k min(a[i,k], a[k,j]) - a[i,j] )`` for a *symmetric* square matrix ``a``.

    Cache-blocked: each task owns an ``_IB x _JB`` tile of the (max, min) product and
    streams the rows ``a[k, j-tile]`` once; the inner loop over the tile's columns is
    contiguous and vectorises. By symmetry of ``a`` the product is symmetric, so only
    tiles that reach the upper triangle are computed.
    """
    n = a.shape[0]
    nib = (n + _IB - 1) // _IB
    njb = (n + _JB - 1) // _JB
    ntask = nib * njb
    best = np.full(ntask, _NEG)
    for t in prange(ntask):
        ib = t // njb
        jb = t % njb
        i0 = ib * _IB
        i1 = min(n, i0 + _IB)
        j0 = jb * _JB
        j1 = min(n, j0 + _JB)
        if j1 <= i0:  # tile entirely below the diagonal: mirrored by another tile
            continue
        ni = i1 - i0
        nj = j1 - j0
        m = np.full((_IB, _JB), _NEG)
        for k in range(n):
            row = a[k, j0:j1]
            for ii in range(ni):
                aik = a[k, i0 + ii]  # = a[i0 + ii, k] by symmetry, read contiguously
                mrow = m[ii]
                for jj in range(nj):
                    b = row[jj]
                    v = aik if aik < b else b
                    mv = mrow[jj]
                    mrow[jj] = v if v > mv else mv
        local = _NEG
        for ii in range(ni):
            for jj in range(nj):
                d = m[ii, jj] - a[i0 + ii, j0 + jj]
                if d > local:
                    local = d
        best[t] = local
    return best.max()


@njit(parallel=True, cache=True)
def four_point_pruned(
    d: np.ndarray, pi: np.ndarray, pj: np.ndarray, lower: float
) -> tuple[float, int]:  # pragma: no cover
    """Exact four-point δ by the pair-pruning scan of Cohen, Coudert & Lagoutte (2015).

    ``(pi[a], pj[a])`` lists all pairs in order of *decreasing* distance. For a quadruple
    whose largest pair-sum is ``d(x,y) + d(u,v)``, ``δ <= min(d(x,y), d(u,v)) / 2``; so
    each quadruple is visited once, at the later of its two pairs, against all earlier
    pairs, and when the current pair has ``d(x,y) <= 2 δ_best`` no later quadruple can
    improve and the scan stops. Pairs are handled in parallel blocks of ``_PAIR_BLOCK``.
    Returns ``(δ, number of pairs scanned)``.
    """
    best = lower
    npairs = pi.shape[0]
    scanned = 0
    res = np.empty(_PAIR_BLOCK)
    for a0 in range(0, npairs, _PAIR_BLOCK):
        if d[pi[a0], pj[a0]] <= 2.0 * best:
            break
        a1 = min(npairs, a0 + _PAIR_BLOCK)
        scanned += a1 - a0
        bound = 2.0 * best
        for t in prange(a1 - a0):
            a = a0 + t
            x = pi[a]
            y = pj[a]
            dxy = d[x, y]
            local = 0.0
            if dxy > bound:
                for b in range(a):
                    u = pi[b]
                    v = pj[b]
                    s1 = dxy + d[u, v]
                    s2 = d[x, u] + d[y, v]
                    s3 = d[x, v] + d[y, u]
                    m = s2 if s2 > s3 else s3
                    val = 0.5 * (s1 - m)
                    if val > local:
                        local = val
            res[t] = local
        for t in range(a1 - a0):
            if res[t] > best:
                best = res[t]
    return best, scanned
