"""numba kernels (serial, GIL released: callers split a batch over threads) for
:func:`hypalign.losses.hierarchy.hierarchy_nll_fused` (loss and gradient in one pass).

For each edge ``b`` with candidates ``v[b, 0]`` (the true ancestor) and ``v[b, 1:]`` (negatives;
``mask[b, k]`` false = not used) the kernel computes, in float64,

  ``loss_b = d(u, v_0) + log sum_k exp(-d(u, v_k))``  and  ``dloss_b/dd_k = [k = 0] - softmax(-d)_k``,

then chains through the distance and writes ``scale * dloss_b/dx`` for the row ``u[b]`` into ``gu[b]``
and for each candidate row ``v[b, k]`` into ``gv[b, k]`` (zero when masked):

* ``kind 0`` Lorentz, points given by space components (``x_0 = sqrt(1/c + |x|^2)``):
  ``A = c (x_0 y_0 - <x, y>)``, ``d = acosh(A) / sqrt(c)``, ``dA/dx = c (y_0 x / x_0 - y)``;
  ``A - 1 = c L^2 / 2`` with ``L^2 = |x - y|^2 - ((|x|^2 - |y|^2) / (x_0 + y_0))^2`` (no cancellation).
* ``kind 1`` Poincaré ball: ``A = 1 + 2 c s / (alpha beta)``, ``s = |x - y|^2``, ``alpha = 1 - c|x|^2``,
  ``dA/dx = 4c / (alpha beta) * ((x - y) + c s / alpha * x)``.
* ``kind 2`` Euclidean: ``d = |x - y|``.

``dd/dA = 1 / (sqrt(c) sqrt((A - 1)(A + 1)))``, with ``A - 1`` floored at ``1e-12`` (coincident points).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, fastmath=False)
def hierarchy_nll_grad(emb, u, v, mask, kind, c, scale, gu, gv):  # pragma: no cover - compiled
    B, K1 = v.shape
    D = emb.shape[1]
    loss = np.zeros(B, dtype=np.float64)
    sc = math.sqrt(c)
    x = np.empty(D, dtype=np.float64)
    gx = np.empty(D, dtype=np.float64)
    d = np.empty(K1, dtype=np.float64)
    am1s = np.empty(K1, dtype=np.float64)
    yys = np.empty(K1, dtype=np.float64)
    ss = np.empty(K1, dtype=np.float64)
    ex = np.empty(K1, dtype=np.float64)
    ys = np.empty((K1, D), dtype=np.float64)  # candidate rows copied once (random reads are the cost)
    for b in range(B):
        ub = u[b]
        xx = 0.0
        for j in range(D):
            x[j] = emb[ub, j]
            xx += x[j] * x[j]
            gx[j] = 0.0
        x0 = math.sqrt(1.0 / c + xx)
        dmin = np.inf
        for k in range(K1):
            if not mask[b, k]:
                continue
            vk = v[b, k]
            s = 0.0
            yy = 0.0
            for j in range(D):
                yj = float(emb[vk, j])
                ys[k, j] = yj
                t = x[j] - yj
                s += t * t
                yy += yj * yj
            yys[k] = yy
            ss[k] = s
            if kind == 0:
                y0 = math.sqrt(1.0 / c + yy)
                q = (xx - yy) / (x0 + y0)
                am1 = c * 0.5 * (s - q * q)
                if am1 < 0.0:  # rounding; a NaN stays NaN (non-finite weights must surface in the loss)
                    am1 = 0.0
                am1s[k] = am1
                d[k] = math.acosh(1.0 + am1s[k]) / sc
            elif kind == 1:
                alpha = max(1.0 - c * xx, 1e-15)
                beta = max(1.0 - c * yy, 1e-15)
                am1s[k] = 2.0 * c * s / (alpha * beta)
                d[k] = math.acosh(1.0 + am1s[k]) / sc
            else:
                d[k] = math.sqrt(s)
            if d[k] < dmin or d[k] != d[k]:  # NaN wins, so the loss is NaN
                dmin = d[k]
        z = 0.0
        for k in range(K1):
            if mask[b, k]:
                ex[k] = math.exp(-(d[k] - dmin))
                z += ex[k]
        loss[b] = d[0] - dmin + math.log(z)
        for k in range(K1):
            if not mask[b, k]:
                continue
            w = ((1.0 if k == 0 else 0.0) - ex[k] / z) * scale  # dloss/dd_k
            vk = v[b, k]
            if kind == 2:
                f = w / max(d[k], 1e-12)
                for j in range(D):
                    t = (x[j] - ys[k, j]) * f
                    gx[j] += t
                    gv[b, k, j] = -t
                continue
            am1 = max(am1s[k], 1e-12)
            f = w / (sc * math.sqrt(am1 * (am1 + 2.0)))
            if kind == 0:
                y0 = math.sqrt(1.0 / c + yys[k])
                fx = f * c * y0 / x0
                fy = f * c * x0 / y0
                fc = f * c
                for j in range(D):
                    yj = ys[k, j]
                    gx[j] += fx * x[j] - fc * yj
                    gv[b, k, j] = fy * yj - fc * x[j]
            else:
                alpha = max(1.0 - c * xx, 1e-15)
                beta = max(1.0 - c * yys[k], 1e-15)
                g = f * 4.0 * c / (alpha * beta)
                ax = c * ss[k] / alpha
                by = c * ss[k] / beta
                for j in range(D):
                    yj = ys[k, j]
                    gx[j] += g * ((x[j] - yj) + ax * x[j])
                    gv[b, k, j] = g * ((yj - x[j]) + by * yj)
        for j in range(D):
            gu[b, j] = gx[j]
    return loss


@numba.njit(nogil=True, cache=True)
def negative_mask(u, v, indptr, indices):  # pragma: no cover - compiled
    """``mask[b, k]`` = candidate ``v[b, k]`` may be used for ``u[b]``: column 0 always; negatives
    only when they are neither ``u[b]`` nor among its closure neighbours ``indices[indptr[u]:indptr[u+1]]``
    (short lists: a linear scan beats a binary search)."""
    B, K1 = v.shape
    mask = np.ones((B, K1), dtype=np.bool_)
    for b in range(B):
        lo = indptr[u[b]]
        hi = indptr[u[b] + 1]
        for k in range(1, K1):
            t = v[b, k]
            if t == u[b]:
                mask[b, k] = False
                continue
            for i in range(lo, hi):
                if indices[i] == t:
                    mask[b, k] = False
                    break
    return mask


@numba.njit(nogil=True, cache=True)
def sum_rows(rows, values, slot):  # pragma: no cover - compiled
    """Sum ``values`` of repeated ``rows``: returns ``(unique_rows, sums)`` (first-seen order).

    ``slot`` is a persistent ``int64`` array of ``-1`` with one entry per table row, restored on exit.
    """
    n, d = values.shape
    uniq = np.empty(n, dtype=np.int64)
    sums = np.zeros((n, d), dtype=values.dtype)
    m = 0
    for i in range(n):
        r = rows[i]
        s = slot[r]
        if s < 0:
            s = m
            slot[r] = m
            uniq[m] = r
            m += 1
        for j in range(d):
            sums[s, j] += values[i, j]
    for i in range(m):
        slot[uniq[i]] = -1
    return uniq[:m], sums[:m]


@numba.njit(nogil=True, cache=True, fastmath=True)
def _tile_scores(embT, nrm, x, xx, w0, w1, kind, c, out):  # pragma: no cover - compiled
    """``out[w - w0]`` = a score increasing with ``d(x, emb[w])`` for ``w`` in ``[w0, w1)``: ``A - 1`` up to a
    factor that depends on ``x`` only (Poincaré ``|x - y|^2 / (1 - c|y|^2)``; Lorentz ``L^2``; Euclidean
    ``|x - y|^2``; see the module docstring). Differences, not dot products: deep Poincaré points differ
    in the 12th digit and ``|x|^2 + |y|^2 - 2 x.y`` would lose them."""
    D = embT.shape[0]
    T = w1 - w0
    s = out[:T]
    for w in range(T):
        s[w] = 0.0
    for j in range(D):
        xj = x[j]
        col = embT[j, w0:w1]
        for w in range(T):
            dj = xj - col[w]
            s[w] += dj * dj
    nv = nrm[w0:w1]
    if kind == 1:
        for w in range(T):
            s[w] = s[w] / (1.0 - c * nv[w])
    elif kind == 0:
        x0 = math.sqrt(1.0 / c + xx)
        for w in range(T):
            q = (xx - nv[w]) / (x0 + math.sqrt(1.0 / c + nv[w]))
            s[w] = s[w] - q * q


@numba.njit(nogil=True, cache=True)
def nearest_non_ancestors(embT, nrm, rows, indptr, indices, kind, c, pool, ranks):  # pragma: no cover
    """For each node ``u = rows[r]``, one exact pass over all nodes:

    * ``pool[r]``: the ``K = pool.shape[1]`` nearest nodes that are neither ``u`` nor an ancestor of ``u``
      (nearest first; ``-1`` pads when there are fewer);
    * ``ranks[indptr[u] + t]``: the reconstruction rank of ``u``'s ancestor ``indices[indptr[u] + t]``,
      ``1 + #{w not u, not an ancestor of u: d(u, w) < d(u, ancestor)}`` (Nickel & Kiela 2017; the
      filtered rank of :func:`hypalign.eval.retrieval.relevant_ranks`).

    ``embT`` is the ``(D, N)`` transposed table (float64), ``nrm`` the squared norms. Nodes are scanned
    in tiles of 2,048 (L2-resident) for blocks of 16 queries; a max-heap per query keeps the pool.
    """
    D, n = embT.shape
    K = pool.shape[1]
    QB = 16
    TILE = 2048
    stamp = np.full(n, -1, dtype=np.int64)
    hd = np.empty((QB, K))
    hi = np.empty((QB, K), dtype=np.int64)
    hm = np.zeros(QB, dtype=np.int64)
    xs = np.empty((QB, D))
    sc = np.empty(TILE)
    amax = np.empty(QB)
    maxa = 1
    for t in range(rows.shape[0]):
        maxa = max(maxa, indptr[rows[t] + 1] - indptr[rows[t]])
    asorted = np.empty((QB, maxa))
    aorder = np.empty((QB, maxa), dtype=np.int64)
    diff = np.zeros((QB, maxa + 1), dtype=np.int64)
    one = np.empty(1)
    for b0 in range(0, rows.shape[0], QB):
        nb = min(QB, rows.shape[0] - b0)
        for q in range(nb):
            u = rows[b0 + q]
            for j in range(D):
                xs[q, j] = embT[j, u]
            hm[q] = 0
            lo = indptr[u]
            m_a = indptr[u + 1] - lo
            asc = np.empty(m_a)
            for a in range(m_a):
                v = indices[lo + a]
                _tile_scores(embT, nrm, xs[q], nrm[u], v, v + 1, kind, c, one)
                asc[a] = one[0]
            o = np.argsort(asc)
            for a in range(m_a):
                aorder[q, a] = o[a]
                asorted[q, a] = asc[o[a]]
            amax[q] = asorted[q, m_a - 1] if m_a > 0 else -np.inf
            for a in range(m_a + 1):
                diff[q, a] = 0
        for w0 in range(0, n, TILE):
            w1 = min(n, w0 + TILE)
            for q in range(nb):
                u = rows[b0 + q]
                _tile_scores(embT, nrm, xs[q], nrm[u], w0, w1, kind, c, sc)
                lo = indptr[u]
                m_a = indptr[u + 1] - lo
                for a in range(m_a):
                    stamp[indices[lo + a]] = u
                stamp[u] = u
                m = hm[q]
                thr = np.inf if m < K else max(amax[q], hd[q, 0])
                for w in range(w1 - w0):
                    a = sc[w]
                    if a >= thr or stamp[w0 + w] == u:
                        continue
                    if a < amax[q]:  # closer than some ancestors: count it for those strictly farther
                        lo_s, hi_s = 0, m_a
                        while lo_s < hi_s:
                            mid = (lo_s + hi_s) // 2
                            if asorted[q, mid] <= a:
                                lo_s = mid + 1
                            else:
                                hi_s = mid
                        diff[q, lo_s] += 1
                    if m < K:  # heap not full: sift up
                        i = m
                        m += 1
                        while i > 0:
                            p = (i - 1) // 2
                            if hd[q, p] >= a:
                                break
                            hd[q, i] = hd[q, p]
                            hi[q, i] = hi[q, p]
                            i = p
                        hd[q, i] = a
                        hi[q, i] = w0 + w
                        if m == K:
                            thr = max(amax[q], hd[q, 0])
                    elif a < hd[q, 0]:  # replace the farthest: sift down
                        i = 0
                        while True:
                            left = 2 * i + 1
                            if left >= K:
                                break
                            right = left + 1
                            big = left if right >= K or hd[q, left] >= hd[q, right] else right
                            if hd[q, big] <= a:
                                break
                            hd[q, i] = hd[q, big]
                            hi[q, i] = hi[q, big]
                            i = big
                        hd[q, i] = a
                        hi[q, i] = w0 + w
                        thr = max(amax[q], hd[q, 0])
                hm[q] = m
        for q in range(nb):
            u = rows[b0 + q]
            lo = indptr[u]
            m_a = indptr[u + 1] - lo
            cnt = 0
            for a in range(m_a):
                cnt += diff[q, a]
                ranks[lo + aorder[q, a]] = cnt + 1
            m = hm[q]
            o = np.argsort(hd[q, :m])
            for t in range(K):
                pool[b0 + q, t] = hi[q, o[t]] if t < m else -1
