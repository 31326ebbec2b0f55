"""numba kernels (serial, GIL released: callers split a batch over threads) for
:func:`hypalign.losses.hierarchy.hierarchy_nll_fused` (loss and gradient in one pass).

For each edge ``b`` with candidates ``v[b, 0]`` (the true ancestor) and ``v[b, 1:]`` (negatives;
``mask[b, k]`` false = not used) the kernel computes, in float64,

  ``loss_b = d(u, v_0) + log sum_k exp(-d(u, v_k))``  and  ``dloss_b/dd_k = [k = 0] - softmax(-d)_k``,

then chains through the distance and adds ``scale * dloss_b/dx`` into ``grad`` (rows of ``emb``):

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
def hierarchy_nll_grad(emb, u, v, mask, kind, c, scale, grad):  # pragma: no cover - compiled
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
                t = x[j] - yj
                s += t * t
                yy += yj * yj
            yys[k] = yy
            ss[k] = s
            if kind == 0:
                y0 = math.sqrt(1.0 / c + yy)
                q = (xx - yy) / (x0 + y0)
                am1 = c * 0.5 * (s - q * q)
                am1s[k] = am1 if am1 > 0.0 else 0.0
                d[k] = math.acosh(1.0 + am1s[k]) / sc
            elif kind == 1:
                alpha = max(1.0 - c * xx, 1e-15)
                beta = max(1.0 - c * yy, 1e-15)
                am1s[k] = 2.0 * c * s / (alpha * beta)
                d[k] = math.acosh(1.0 + am1s[k]) / sc
            else:
                d[k] = math.sqrt(s)
            if d[k] < dmin:
                dmin = d[k]
        z = 0.0
        for k in range(K1):
            if mask[b, k]:
                z += math.exp(-(d[k] - dmin))
        loss[b] = d[0] - dmin + math.log(z)
        for k in range(K1):
            if not mask[b, k]:
                continue
            w = ((1.0 if k == 0 else 0.0) - math.exp(-(d[k] - dmin)) / z) * scale  # dloss/dd_k
            vk = v[b, k]
            if kind == 2:
                f = w / max(d[k], 1e-12)
                for j in range(D):
                    t = (x[j] - float(emb[vk, j])) * f
                    gx[j] += t
                    grad[vk, j] -= t
                continue
            am1 = max(am1s[k], 1e-12)
            f = w / (sc * math.sqrt(am1 * (am1 + 2.0)))
            if kind == 0:
                y0 = math.sqrt(1.0 / c + yys[k])
                fx = f * c * y0 / x0
                fy = f * c * x0 / y0
                fc = f * c
                for j in range(D):
                    yj = float(emb[vk, j])
                    gx[j] += fx * x[j] - fc * yj
                    grad[vk, j] += fy * yj - fc * x[j]
            else:
                alpha = max(1.0 - c * xx, 1e-15)
                beta = max(1.0 - c * yys[k], 1e-15)
                g = f * 4.0 * c / (alpha * beta)
                ax = c * ss[k] / alpha
                by = c * ss[k] / beta
                for j in range(D):
                    yj = float(emb[vk, j])
                    gx[j] += g * ((x[j] - yj) + ax * x[j])
                    grad[vk, j] += g * ((yj - x[j]) + by * yj)
        for j in range(D):
            grad[ub, j] += gx[j]
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
