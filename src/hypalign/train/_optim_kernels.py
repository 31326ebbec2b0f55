"""numba kernels of the row-wise optimizers for embedding tables (:class:`hypalign.train.optim.LazyAdam`,
:class:`hypalign.train.optim.RiemannianAdam`): serial, GIL released, updating only the rows a batch touched.

``kind`` 0 Lorentz (space components), 1 Poincaré ball, 2 Euclidean.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def lazy_adam_rows(p, m, v, rows, g, lr, b1, b2, eps, c1, c2):  # pragma: no cover - compiled
    """Lazy Adam on the given rows only (see :class:`hypalign.train.optim.LazyAdam`)."""
    d = p.shape[1]
    for i in range(len(rows)):
        r = rows[i]
        for j in range(d):
            gj = g[i, j]
            mj = b1 * m[r, j] + (1.0 - b1) * gj
            vj = b2 * v[r, j] + (1.0 - b2) * gj * gj
            m[r, j] = mj
            v[r, j] = vj
            p[r, j] -= lr * (mj / c1) / (np.sqrt(vj / c2) + eps)


@numba.njit(nogil=True, cache=True)
def riemannian_adam_rows(p, m, v, rows, g, lr, b1, b2, eps, c1, c2, kind, c, max_norm):  # pragma: no cover
    """Riemannian Adam on the given rows (see :class:`hypalign.train.optim.RiemannianAdam`).

    ``kind`` 0 Lorentz (space components), 1 Poincaré ball, 2 Euclidean; ``v`` holds one second moment
    per row (the squared Riemannian norm of the row's gradient); ``max_norm`` bounds Poincaré points.
    """
    d = p.shape[1]
    sc = math.sqrt(c)
    rg = np.empty(d, dtype=np.float64)
    u = np.empty(d, dtype=np.float64)
    for i in range(len(rows)):
        r = rows[i]
        xx = 0.0
        gg = 0.0
        xg = 0.0
        for j in range(d):
            xj = float(p[r, j])
            gj = float(g[i, j])
            xx += xj * xj
            gg += gj * gj
            xg += xj * gj
        lam = 1.0
        if kind == 0:  # chart metric G = I - x x^T / x_0^2, G^-1 = I + c x x^T
            for j in range(d):
                rg[j] = g[i, j] + c * xg * p[r, j]
            gn2 = gg + c * xg * xg
        elif kind == 1:  # conformal factor lam = 2 / (1 - c|x|^2): grad_R = g / lam^2, |grad_R|_x^2 = |g|^2 / lam^2
            lam = 2.0 / max(1.0 - c * xx, 1e-300)
            for j in range(d):
                rg[j] = g[i, j] / (lam * lam)
            gn2 = gg / (lam * lam)
        else:
            for j in range(d):
                rg[j] = g[i, j]
            gn2 = gg
        vr = b2 * v[r] + (1.0 - b2) * gn2
        v[r] = vr
        den = math.sqrt(vr / c2) + eps
        uu = 0.0
        for j in range(d):
            mj = b1 * m[r, j] + (1.0 - b1) * rg[j]
            m[r, j] = mj
            u[j] = -lr * (mj / c1) / den
            uu += u[j] * u[j]
        if uu == 0.0:
            continue
        if kind == 2:
            for j in range(d):
                p[r, j] += u[j]
            continue
        if kind == 0:  # exp_x(u) on the hyperboloid; |u|_x^2 = |u|^2 - (x.u)^2 / x_0^2
            x0 = math.sqrt(1.0 / c + xx)
            xu = 0.0
            for j in range(d):
                xu += p[r, j] * u[j]
            n = math.sqrt(max(uu - xu * xu / (x0 * x0), 0.0)) * sc
            if n < 1e-300:
                continue
            ch = math.cosh(n)
            sh = math.sinh(n) / n
            for j in range(d):
                p[r, j] = ch * p[r, j] + sh * u[j]
            continue
        # Poincaré: exp_x(u) = x (+)_c tanh(sqrt(c) lam |u| / 2) u / (sqrt(c) |u|)  (Moebius addition)
        un = math.sqrt(uu)
        t = math.tanh(sc * lam * un / 2.0) / (sc * un)
        xy = 0.0
        yy = 0.0
        for j in range(d):
            u[j] *= t
            xy += p[r, j] * u[j]
            yy += u[j] * u[j]
        # x (+) y - x = (1 - c|x|^2) (c|y|^2 x + y) / (1 + 2c<x,y> + c^2|x|^2|y|^2): added as a difference,
        # which keeps its relative precision near the boundary (the quotient form cancels there)
        b = 1.0 - c * xx
        q = 1.0 + 2.0 * c * xy + c * c * xx * yy
        nn = 0.0
        for j in range(d):
            pj = p[r, j] + b * (c * yy * p[r, j] + u[j]) / q
            p[r, j] = pj
            nn += pj * pj
        nn = math.sqrt(nn)
        if nn > max_norm:
            for j in range(d):
                p[r, j] *= max_norm / nn
            nn = max_norm
        lam2 = 2.0 / max(1.0 - c * nn * nn, 1e-300)
        for j in range(d):  # carry the first moment along (conformal rescaling: same Riemannian length)
            m[r, j] *= lam / lam2
