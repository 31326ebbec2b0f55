"""The interface every geometry shares, and the chunked all-pairs distance driver.

Conventions used throughout :mod:`hypalign.geometry`:

* Hyperbolic spaces have constant curvature ``-c`` with ``c > 0``.
* Lorentz points are passed as their *space* components (MERU convention); the
  time component ``x_t = sqrt(1/c + ||x||^2)`` is derived when needed.
* ``dist(x, y)`` is paired and broadcasts like ``x - y``; ``cdist(x, y)`` gives
  all ``N x M`` pairs.

``cdist`` never materialises an ``N x M x D`` tensor. Each geometry writes its
all-pairs distance as ``finish(Xf @ Yf.T)`` for two small *factor* matrices of
``D + k`` columns (``k <= 2``) built row-wise from the inputs, so the whole job
is one matrix product per row chunk plus a few in-place elementwise passes over
the output. Memory is the ``N x M`` result plus a workspace bounded by
``chunk_rows`` (or by the ``workspace_bytes`` argument).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

#: default bound on the temporary memory that ``cdist`` may use on top of its output.
DEFAULT_WORKSPACE_BYTES = 256 * 2**20
#: ``cdist`` recomputes entries whose matrix-product value is within this factor of its rounding error
#: (relative error of the distance then stays below ~1/REFINE_FACTOR).
REFINE_FACTOR = 2.0e4
#: target size of one row chunk of the output (elementwise passes then run in cache)
CHUNK_TARGET_BYTES = 8 * 2**20


def feature_clip(u: Tensor, r: float) -> Tensor:
    """Hyp-ViT feature clipping: ``u * min(1, r / (||u|| + 1e-5))``.

    Applied to Euclidean features before ``expmap0`` so no point lands closer to
    the boundary than radius ``tanh(sqrt(c) r) / sqrt(c)`` (Ermolov et al. 2022,
    "Hyperbolic Vision Transformers", §3; the ``1e-5`` is the reference code's).
    """
    if r <= 0:
        raise ValueError(f"feature_clip radius r must be > 0, got {r}")
    norm = u.norm(dim=-1, keepdim=True)
    return u * torch.clamp(r / (norm + 1e-5), max=1.0)


def safe_norm(x: Tensor, dim: int = -1, keepdim: bool = True, min_norm: float = 1e-15) -> Tensor:
    """Euclidean norm with a floor, whose gradient stays finite at ``x = 0``."""
    sq = (x * x).sum(dim=dim, keepdim=keepdim)
    return torch.sqrt(sq.clamp_min(min_norm * min_norm))


def as_float(x: Tensor) -> Tensor:
    """Distances are computed in at least float32 (half precision is unstable near the boundary)."""
    if not x.is_floating_point():
        return x.to(torch.get_default_dtype())
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


class Manifold(nn.Module):
    """Base class: one small interface shared by all geometries.

    Subclasses implement ``expmap0``, ``logmap0``, ``dist``, ``project``,
    ``contains``, ``mean`` and the two halves of ``cdist``
    (``_cdist_factors`` and ``_cdist_finish_``).
    """

    #: short name used in files and on the command line
    name: str = "manifold"
    #: whether the geometry has a curvature parameter
    curved: bool = False

    # ---- interface -------------------------------------------------------------------------
    def expmap0(self, u: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logmap0(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def dist(self, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, x: Tensor, atol: float = 1e-5) -> Tensor:  # pragma: no cover - abstract
        """Boolean mask over rows: is each point on the manifold (within ``atol``)?"""
        raise NotImplementedError

    def mean(self, x: Tensor, weights: Tensor | None = None, dim: int = 0) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def similarity(self, x: Tensor, y: Tensor) -> Tensor:
        """Paired similarity (broadcasting like ``dist``): ``-dist(x, y)``; the sphere overrides it with the
        cosine ``<x, y>`` (same ranking as ``-dist`` there, and CLIP's logit)."""
        return -self.dist(x, y)

    def similarity_matrix(self, x: Tensor, y: Tensor, refine: bool = False) -> Tensor:
        """``(N, M)`` similarities of every pair, the logits of contrastive losses and retrieval scores:
        ``-cdist(x, y)`` (``refine=False``: without the refinement pass for near-coincident pairs, which logits
        tolerate and which early in training would recompute most of a large matrix); the sphere: ``x @ y.T``."""
        return -self.cdist(x, y, refine=refine)

    def mips_vectors(self, x: Tensor, role: str) -> Tensor:
        """Vectors whose inner product ranks like ``-dist`` (``role``: ``"gallery"`` or ``"query"``), so that exact
        nearest neighbours become a maximum-inner-product search (faiss ``IndexFlatIP``, HNSW after augmentation)."""
        raise TypeError(f"no inner-product reduction for {type(self).__name__}")

    @staticmethod
    def feature_clip(u: Tensor, r: float) -> Tensor:
        """See :func:`hypalign.geometry.base.feature_clip`."""
        return feature_clip(u, r)

    def extra_repr(self) -> str:
        return ""

    # ---- all pairs ---------------------------------------------------------------------------
    def _cdist_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _cdist_finish_(self, q: Tensor, tmp: Tensor) -> Tensor:  # pragma: no cover
        """Turn the product ``q = Xf @ Yf.T`` into distances in place (no-grad path); ``tmp`` is scratch
        of the same shape."""
        raise NotImplementedError

    def _cdist_fused_finish_(self, q: Tensor, bx: Tensor | None, by: Tensor | None) -> np.ndarray | None:
        """The refinement test and the finish of ``q`` in one pass where a geometry has a kernel for it: returns the
        flagged count per row (flagged entries left at -1), or ``None`` (then :meth:`_unreliable` and
        :meth:`_cdist_finish_` run)."""
        return None

    def _cdist_finish(self, q: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Out-of-place (differentiable) version of :meth:`_cdist_finish_`, used when gradients are needed."""
        raise NotImplementedError

    def _cdist_bound_factors(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Non-negative ``(bx (N, r), by (M, r))``, ``r`` small, with ``sum_k |Xf_ik Yf_jk| <= bx_i . by_j``: the
        rounding error of the factor product ``q_ij`` is a small multiple of ``eps * bx_i . by_j`` (a per-pair bound,
        so a pair is refined only when its own product may have cancelled)."""
        raise NotImplementedError

    def cdist(
        self,
        x: Tensor,
        y: Tensor,
        chunk_rows: int | None = None,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        refine: bool = True,
    ) -> Tensor:
        """All pairwise distances ``D[i, j] = dist(x[i], y[j])``, shape ``(N, M)``.

        Computed from one matrix product of ``(D + k)``-column factor matrices per row
        chunk; memory is ``O(N M)`` for the result plus a workspace of at most
        ``workspace_bytes`` (or ``chunk_rows`` rows). Differentiable: when gradients
        are needed, the product is taken whole and finished out of place.

        The product form cancels for near-coincident points (most in float32, far
        from the origin). With ``refine=True`` (no-grad path) the entries whose product
        is below ``REFINE_FACTOR`` times its own rounding-error scale are recomputed
        with the stable paired :meth:`dist`, so small distances keep relative precision.
        """
        if x.dim() != 2 or y.dim() != 2:
            raise ValueError(f"cdist expects 2-d inputs (N, D) and (M, D); got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"cdist: dimension mismatch, x has D={x.shape[1]} but y has D={y.shape[1]}")
        x, y = as_float(x), as_float(y)
        dtype = torch.promote_types(x.dtype, y.dtype)
        x, y = x.to(dtype), y.to(dtype)
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or y.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if needs_grad:
            xf, yf = self._cdist_factors(x, y)
            return self._cdist_finish(xf @ yf.T)
        n, m = x.shape[0], y.shape[0]
        out = torch.empty((n, m), dtype=dtype, device=x.device)
        if n == 0 or m == 0:
            return out
        with torch.no_grad():
            # The y factors (product and error bound) are shared by all chunks; the x side is built per chunk.
            yf = self._cdist_factors(x[:1], y)[1]
            by = self._cdist_bound_factors(x[:1], y)[1].to(dtype) if refine else None
            by_max = by.amax(0) if by is not None else None
            if chunk_rows is None:
                # row chunks of ~CHUNK_TARGET_BYTES keep the elementwise passes in cache, within the workspace
                per_row = (2 * m + x.shape[1] + 4) * x.element_size()
                chunk_rows = int(min(max(CHUNK_TARGET_BYTES // (m * x.element_size()), 1), workspace_bytes // per_row))
                chunk_rows = max(1, chunk_rows)
            scratch = torch.empty((min(chunk_rows, n), m), dtype=dtype, device=x.device)
            for start in range(0, n, chunk_rows):
                stop = min(n, start + chunk_rows)
                xs = x[start:stop]
                block, tmp = out[start:stop], scratch[: stop - start]
                torch.mm(self._cdist_factors(xs, y[:1])[0], yf.T, out=block)
                flagged = None
                bx = self._cdist_bound_factors(xs, y[:1])[0].to(dtype) if by is not None else None
                count = self._cdist_fused_finish_(block, bx, by)
                if count is not None:  # finished in one pass; flagged entries are -1
                    total = int(count.sum())
                    if total:
                        from hypalign.geometry._cdist_kernels import locate_flagged

                        offsets = np.cumsum(count) - count
                        rr, cc = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64)
                        locate_flagged(block.numpy(), count, offsets, rr, cc)
                        flagged = (torch.from_numpy(rr), torch.from_numpy(cc))
                else:
                    if bx is not None and by is not None:
                        flagged = self._unreliable(block, bx, by, by_max)
                    self._cdist_finish_(block, tmp)
                if flagged is not None:
                    rows, cols = flagged
                    block[rows, cols] = self._recompute(xs, y, rows, cols, dtype, yf if by is not None else None, by)
        return out

    def _recompute(self, x: Tensor, y: Tensor, rows: Tensor, cols: Tensor, dtype: torch.dtype, yf: Tensor | None,
                   by: Tensor | None) -> Tensor:
        """The flagged entries, exactly, by the stable paired formula (:meth:`_exact_pairs`; on the CPU one numba
        pass over the pairs). Elsewhere (GPU), rows with many flags (near-duplicate galleries) take their whole row
        of the factor product again in float64 — one dense product instead of gathering a point pair per entry —
        and keep it where float64 suffices (``q >= REFINE_FACTOR * eps64 * bound``)."""
        out = torch.empty(rows.shape[0], dtype=dtype, device=x.device)
        todo = torch.ones(rows.shape[0], dtype=torch.bool, device=x.device)
        if yf is not None and by is not None and x.dtype != torch.float64 and not self._moments_on_cpu(x, y):
            per_row = torch.bincount(rows, minlength=x.shape[0])
            heavy = (per_row > max(32, y.shape[0] // 64)).nonzero().squeeze(1)
            if heavy.numel():
                xs64, y64 = x.index_select(0, heavy).double(), y.double()
                q64 = self._cdist_factors(xs64, y64[:1])[0] @ self._cdist_factors(xs64[:1], y64)[1].T
                bound = self._cdist_bound_factors(xs64, y64[:1])[0] @ self._cdist_bound_factors(xs64[:1], y64)[1].T
                where = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
                where[heavy] = torch.arange(heavy.numel(), device=x.device)
                sel = (where[rows] >= 0).nonzero().squeeze(1)
                qv = q64[where[rows[sel]], cols[sel]]
                ok = (qv >= bound[where[rows[sel]], cols[sel]] * (torch.finfo(torch.float64).eps * REFINE_FACTOR)) & \
                    (qv >= self._cdist_q_floor(torch.float64))
                good = sel[ok]
                out[good] = self._cdist_finish(qv[ok]).to(dtype)
                todo[good] = False
        rest = todo.nonzero().squeeze(1)
        if rest.numel():
            out[rest] = self._exact_pairs(x, y, rows[rest], cols[rest], dtype)
        return out

    def _exact_pairs(self, x: Tensor, y: Tensor, rows: Tensor, cols: Tensor, dtype: torch.dtype,
                     chunk: int = 1 << 16) -> Tensor:
        """``dist(x[rows], y[cols])`` with the stable paired formula (differences of coordinates: no cancellation),
        ``chunk`` pairs at a time so the gathered rows stay small however many pairs were flagged. On the CPU the
        pairs' moments (:func:`hypalign.geometry._cdist_kernels.pair_moments`: float64 ``|x - y|^2``,
        ``(x - y).(x + y)``, ``|x|^2``, ``|y|^2`` from the coordinates' differences) come from one numba pass over
        the pairs with no gathered rows, and :meth:`_dist_from_moments` finishes them."""
        if self._moments_on_cpu(x, y):
            from hypalign.geometry._cdist_kernels import pair_moments

            mom = np.empty((rows.shape[0], 4), dtype=np.float64)
            pair_moments(x.detach().contiguous().numpy(), y.detach().contiguous().numpy(), rows.contiguous().numpy(),
                         cols.contiguous().numpy(), mom)
            d = self._dist_from_moments(torch.from_numpy(mom))
            if d is not None:
                return d.to(dtype)
        out = torch.empty(rows.shape[0], dtype=dtype, device=x.device)
        for s in range(0, rows.shape[0], chunk):
            r, c = rows[s : s + chunk], cols[s : s + chunk]
            out[s : s + chunk] = self.dist(x.index_select(0, r), y.index_select(0, c)).to(dtype)
        return out

    def _moments_on_cpu(self, x: Tensor, y: Tensor) -> bool:
        """Whether :meth:`_exact_pairs` takes the numba pair-moment pass: float32 CPU tensors (their moments in
        float64 are more precise than the paired formula in float32; float64 points take :meth:`dist` itself, the
        same float64 evaluation as every other path) and a geometry that has :meth:`_dist_from_moments`."""
        return x.device.type == "cpu" and y.device.type == "cpu" and x.dtype == torch.float32 \
            and y.dtype == torch.float32 and type(self)._dist_from_moments is not Manifold._dist_from_moments

    def _dist_from_moments(self, m: Tensor) -> Tensor | None:
        """Paired distances from float64 pair moments ``m[:, 0:4] = (|x - y|^2, (x - y).(x + y), |x|^2, |y|^2)``,
        shape ``(K, 4) -> (K,)``: the same stable formula as :meth:`dist`. ``None`` where a geometry has none."""
        return None

    def gallery_cache(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-row factor form and error-bound factors of gallery points, for repeated :meth:`dist_candidates`."""
        y = as_float(y)
        with torch.no_grad():
            return self._cdist_factors(y[:1], y)[1].contiguous(), self._cdist_bound_factors(y[:1], y)[1].contiguous()

    def dist_candidates(
        self,
        x: Tensor,
        y: Tensor,
        cand: Tensor,
        refine: bool = True,
        cache: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """``D[i, j] = dist(x[i], y[cand[i, j]])`` for a few candidates per row (no-grad; re-ranking).

        Uses the ``cdist`` factor form: one gather of the candidates' factor rows (from ``cache =
        gallery_cache(y)`` when given), one batched product, the same in-place finish and
        refinement. ``cand`` must hold valid indices.
        """
        x = as_float(x)
        yf_all, by_all = cache if cache is not None else self.gallery_cache(y)
        dtype = torch.promote_types(x.dtype, yf_all.dtype)
        x = x.to(dtype)
        b, kc = cand.shape
        with torch.no_grad():
            flat = cand.reshape(-1)
            xf = self._cdist_factors(x, x[:1])[0]
            yf = yf_all.to(dtype).index_select(0, flat).view(b, kc, -1)
            q = torch.bmm(yf, xf.unsqueeze(-1)).squeeze(-1)
            flagged = None
            if refine:
                bx = self._cdist_bound_factors(x, x[:1])[0].to(dtype)
                by = by_all.to(dtype).index_select(0, flat).view(b, kc, -1)
                thr = torch.bmm(by, bx.unsqueeze(-1)).squeeze(-1) * (torch.finfo(dtype).eps * REFINE_FACTOR)
                rows, cols = ((q < thr) | (q < self._cdist_q_floor(dtype))).nonzero(as_tuple=True)
                flagged = (rows, cols) if rows.numel() else None
            # the same finish as cdist's (the fused kernel where it applies), so that both give the same numbers
            if self._cdist_fused_finish_(q, None, None) is None:
                self._cdist_finish_(q, torch.empty_like(q))
            if flagged is not None:
                rows, cols = flagged
                q[rows, cols] = self._exact_pairs(x, as_float(y).to(dtype), rows, cand[rows, cols], dtype)
        return q

    def _cdist_q_floor(self, dtype: torch.dtype) -> float:
        """Products below this are recomputed whatever their bound: where the in-place finish itself loses
        precision (0 here: ``sqrt`` and ``asin(sqrt)`` keep it; the hyperbolic models override)."""
        return 0.0

    def _unreliable(self, q: Tensor, bx: Tensor, by: Tensor, by_max: Tensor) -> tuple[Tensor, Tensor] | None:
        """Entries of the product ``q`` whose rounding error may exceed the target: ``q_ij < REFINE_FACTOR * eps *
        (bx_i . by_j)`` (the factor product's error is a small multiple of ``eps * bx_i . by_j``, each geometry's
        :meth:`_cdist_bound_factors`), or ``q_ij`` below :meth:`_cdist_q_floor` (where the finish loses precision).

        On the CPU one numba pass counts the flagged entries per row (no temporary); elsewhere a row whose smallest
        entry clears ``bx_i . max_j by_j`` is skipped. The per-pair test then runs on the remaining rows only."""
        eps = torch.finfo(q.dtype).eps * REFINE_FACTOR
        floor = self._cdist_q_floor(q.dtype)
        if q.device.type == "cpu" and q.is_contiguous():  # one vectorised pass (numba), rows with a flag located
            from hypalign.geometry._cdist_kernels import count_unreliable

            count = np.zeros(q.shape[0], dtype=np.int64)
            count_unreliable(q.numpy(), bx.contiguous().numpy(), by.T.contiguous().numpy(), eps, floor, count)
            cand = torch.from_numpy(np.flatnonzero(count))
        else:
            row_thr = (bx @ by_max) * eps
            cand = (q.amin(1) < row_thr.clamp_min(floor)).nonzero().squeeze(1)
        if cand.numel() == 0:
            return None
        qc = q.index_select(0, cand)
        bad = (qc < (bx.index_select(0, cand) @ by.T) * eps) | (qc < floor)
        r, c = bad.nonzero(as_tuple=True)
        return (cand[r], c) if r.numel() else None


class CurvedManifold(Manifold):
    """A manifold with curvature ``-c``; ``c`` fixed or learnable.

    A learnable curvature is stored as ``log c`` (so it stays positive) and clamped
    on every read to ``[c_min, c_max]`` (MERU learns ``log c`` clamped to
    ``[c0/10, 10 c0]``; those are the defaults here when ``learnable=True``).
    """

    curved = True

    def __init__(
        self,
        c: float = 1.0,
        learnable: bool = False,
        c_min: float | None = None,
        c_max: float | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"curvature c must be a finite number > 0 (the space has curvature -c); got {c!r}")
        c_min = c / 10 if c_min is None and learnable else (c_min if c_min is not None else c)
        c_max = c * 10 if c_max is None and learnable else (c_max if c_max is not None else c)
        if not (0 < c_min <= c <= c_max):
            raise ValueError(f"need 0 < c_min <= c <= c_max, got c_min={c_min}, c={c}, c_max={c_max}")
        self.c_min = float(c_min)
        self.c_max = float(c_max)
        log_c = torch.tensor(math.log(c), dtype=torch.float64 if not learnable else torch.float32)
        if learnable:
            self.log_c = nn.Parameter(log_c)
        else:
            self.register_buffer("log_c", log_c, persistent=True)
        self.learnable = learnable

    @property
    def c(self) -> Tensor:
        """The curvature magnitude ``c`` (a 0-d tensor), clamped to ``[c_min, c_max]``."""
        return self.log_c.clamp(math.log(self.c_min), math.log(self.c_max)).exp()

    def _c(self, like: Tensor) -> Tensor:
        return self.c.to(dtype=like.dtype, device=like.device)

    # Both hyperbolic models reduce all pairs to q = sinh^2(sqrt(c) d / 2): d = (2/sqrt(c)) asinh(sqrt(q)),
    # evaluated as log(sqrt(q) + sqrt(1 + q)) from vectorised kernels (torch's asinh is not vectorised
    # on CPU and dominated the run time). That form loses relative precision only for q below about
    # 1e8 * eps^2, far inside the range the refinement pass recomputes (q < REFINE_FACTOR * eps * s_x * s_y
    # with s >= 1), so with refine=True every entry keeps ~1e-4 relative precision or better.
    def _cdist_q_floor(self, dtype: torch.dtype) -> float:
        """``log(sqrt(q) + sqrt(1 + q))`` loses about ``eps / sqrt(q)`` of relative precision for small ``q``:
        products below ``(eps / 2e-5)^2`` are recomputed (float32: q < 3.6e-5, i.e. ``sqrt(c) d < 0.012``)."""
        return (torch.finfo(dtype).eps / 2e-5) ** 2

    def _cdist_finish_(self, q: Tensor, tmp: Tensor) -> Tensor:
        two_over_sqrt_c = 2.0 / float(self.c) ** 0.5
        q.clamp_min_(0.0)
        torch.add(q, 1.0, out=tmp).sqrt_()
        return q.sqrt_().add_(tmp).log_().mul_(two_over_sqrt_c)

    def _cdist_fused_finish_(self, q: Tensor, bx: Tensor | None, by: Tensor | None) -> np.ndarray | None:
        """float32 CPU blocks: :func:`hypalign.geometry._cdist_kernels.hyperbolic_finish` (test and finish in one
        vectorised pass)."""
        if q.dtype != torch.float32 or q.device.type != "cpu" or not q.is_contiguous() or \
                (bx is not None and bx.shape[1] != 2):
            return None
        import numba

        from hypalign.geometry._cdist_kernels import hyperbolic_finish

        count = np.zeros(q.shape[0], dtype=np.int64)
        buf = np.empty((numba.config.NUMBA_NUM_THREADS, q.shape[1]), dtype=np.float32)
        check = bx is not None and by is not None
        bxa = bx.contiguous().numpy() if check else np.zeros((q.shape[0], 2), dtype=np.float32)
        bya = by.T.contiguous().numpy() if check else np.zeros((2, q.shape[1]), dtype=np.float32)
        hyperbolic_finish(q.numpy(), bxa, bya, torch.finfo(torch.float32).eps * REFINE_FACTOR,
                          self._cdist_q_floor(torch.float32), 1.0 / float(self.c) ** 0.5, check, count, buf)
        return count

    def _cdist_finish(self, q: Tensor) -> Tensor:
        sqrt_c = self._c(q) ** 0.5
        return torch.asinh(torch.sqrt(q.clamp_min(1e-30))) * (2.0 / sqrt_c)

    def extra_repr(self) -> str:
        s = f"c={float(self.c):.6g}"
        if self.learnable:
            s += f", learnable=True, c_min={self.c_min:.6g}, c_max={self.c_max:.6g}"
        return s
