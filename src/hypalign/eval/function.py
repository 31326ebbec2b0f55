"""Multi-label function prediction metrics (CAFA; Radivojac et al. 2013, Zhou et al. 2019).

Inputs are dense ``(proteins x terms)`` arrays: ``scores`` (higher = more confident) and ``truth``
(0/1). Annotations are usually propagated to ancestors first (:func:`propagate`): a protein
annotated with a term has all of its ancestors (is_a, part_of), and a prediction score for an
ancestor is at least the best score of its descendants.

* **Fmax** (protein-centric): for each threshold ``t``, precision ``pr(t)`` is averaged over the
  proteins with at least one score ``>= t`` (their share is the *coverage*), recall ``rc(t)`` over all
  proteins with at least one true term; ``Fmax = max_t 2 pr rc / (pr + rc)``. CAFA thresholds are
  0.01, 0.02, ..., 1.00; ``thresholds="all"`` sweeps every distinct score (torchdrug/ProtCLIP).
* **AUPR micro** (pair-centric): all (protein, term) pairs ranked by score, average precision
  ``sum over positives of precision@rank / #positives``.
* **AUPR macro** (term-centric): average precision per term with at least one positive, averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hypalign.data.go_split import GOSplitData

CAFA_THRESHOLDS = np.round(np.arange(1, 101) / 100.0, 2)


def propagate(matrix: np.ndarray, ancestors: Sequence[Sequence[int]], mode: str = "max") -> np.ndarray:
    """Propagate a ``(proteins x terms)`` matrix to ancestors.

    ``ancestors[t]`` lists every ancestor of term ``t`` (transitively; not ``t`` itself). ``mode="max"``
    gives each ancestor the maximum over itself and its descendants (scores and 0/1 labels alike).
    """
    if mode != "max":
        raise ValueError("only mode='max' is supported")
    m = np.asarray(matrix)
    if len(ancestors) != m.shape[1]:
        raise ValueError(f"ancestors has {len(ancestors)} entries for {m.shape[1]} terms")
    out = np.ascontiguousarray(m.T)  # term-major: each term's column is one contiguous row
    if np.shares_memory(out, m):  # m was already term-major (a transposed view): never write into the input
        out = out.copy()
    for t, anc in enumerate(ancestors):
        if len(anc):
            rows = np.asarray(anc, dtype=np.int64)
            out[rows] = np.maximum(out[rows], out[t])
    return np.ascontiguousarray(out.T)


@dataclass
class FmaxResult:
    fmax: float
    threshold: float
    precision: float
    recall: float
    coverage: float


def fmax(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | str | None = None) -> FmaxResult:
    """Protein-centric Fmax with the threshold, precision, recall and coverage where it is reached."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth).astype(bool)
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(f"scores and truth must be the same 2-d shape, got {s.shape} and {y.shape}")
    annotated = y.any(1)
    s, y = s[annotated], y[annotated]
    if len(s) == 0:
        raise ValueError("no protein has a true annotation")
    if thresholds is None:
        thresholds = CAFA_THRESHOLDS
    elif isinstance(thresholds, str):
        if thresholds != "all":
            raise ValueError("thresholds must be an array, None (CAFA 0.01..1.00) or 'all'")
        thresholds = np.unique(s)
    thr = np.asarray(thresholds, dtype=np.float64)
    if len(thr) and np.all(np.diff(thr) > 0) and len(thr) <= 10_000:
        n_pred_t, tp_t = _threshold_counts(s, y, thr)  # (proteins, thresholds), one pass over the matrix
    else:
        n_pred_t = np.stack([(s >= t).sum(1) for t in thr], 1) if len(thr) else np.zeros((len(s), 0))
        tp_t = np.stack([((s >= t) & y).sum(1) for t in thr], 1) if len(thr) else np.zeros((len(s), 0))
    return _fmax_from_counts(n_pred_t, tp_t, y.sum(1), thr)


def _fmax_from_counts(n_pred_t: np.ndarray, tp_t: np.ndarray, n_true: np.ndarray, thr: np.ndarray) -> FmaxResult:
    best = FmaxResult(0.0, float("nan"), 0.0, 0.0, 0.0)
    for k, t in enumerate(thr):
        n_pred, tp = n_pred_t[:, k], tp_t[:, k]
        covered = n_pred > 0
        if not covered.any():
            continue
        pr = float(np.mean(tp[covered] / n_pred[covered]))
        rc = float(np.mean(tp / n_true))
        f = 2 * pr * rc / (pr + rc) if pr + rc > 0 else 0.0
        if f > best.fmax:
            best = FmaxResult(f, float(t), pr, rc, float(covered.mean()))
    return best


class FmaxByProtein:
    """Protein-centric Fmax taken apart by protein, for searches over score matrices that differ in some
    rows only (blend weights per group of proteins): :meth:`counts` gives each protein's number of
    predicted and of correctly predicted terms at every CAFA threshold, :meth:`value` the Fmax of any
    stack of such rows (one per protein of ``truth``, in order) — the same figure :func:`fmax` gives for
    the matrix those rows came from. ``columns``: the terms that count (e.g. all but the root)."""

    def __init__(self, truth: np.ndarray, columns: np.ndarray | None = None) -> None:
        y = np.asarray(truth).astype(bool)
        self.columns = columns
        self.y = y if columns is None else y[:, columns]
        self.annotated = self.y.any(1)
        if not self.annotated.any():
            raise ValueError("no protein has a true annotation")
        self.n_true = self.y[self.annotated].sum(1)
        self.thr = CAFA_THRESHOLDS

    def counts(self, scores: np.ndarray) -> np.ndarray:
        """``(proteins, 2, thresholds)``: ``#(scores >= t)`` and ``#(true terms with score >= t)`` per protein."""
        s = np.asarray(scores)
        if self.columns is not None:
            s = s[:, self.columns]
        if s.shape != self.y.shape:
            raise ValueError(f"scores shaped {s.shape}, expected {self.y.shape}")
        out = np.zeros((len(s), 2, len(self.thr)))
        n_pred, tp = _threshold_counts(np.asarray(s[self.annotated], np.float64), self.y[self.annotated], self.thr)
        out[self.annotated, 0], out[self.annotated, 1] = n_pred, tp
        return out

    def value(self, counts: np.ndarray) -> float:
        c = counts[self.annotated]
        return _fmax_from_counts(c[:, 0], c[:, 1], self.n_true, self.thr).fmax

    def __call__(self, scores: np.ndarray) -> float:
        return self.value(self.counts(scores))


def _threshold_counts(s: np.ndarray, y: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per protein and increasing threshold ``t_k``: ``#(scores >= t_k)`` and ``#(true terms with score >= t_k)``.

    Each score falls in bin ``b = #(t <= score) - 1`` (``score >= t_k`` exactly when ``b >= k``); per-protein
    bin counts summed from the top give both tables without a pass per threshold."""
    n, k = s.shape[0], len(thr)
    bins = np.searchsorted(thr, s, side="right") - 1  # -1: below every threshold
    keep = bins >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], s.shape)
    flat = rows[keep] * k + bins[keep]
    all_counts = np.bincount(flat, minlength=n * k).reshape(n, k)
    tp_counts = np.bincount(flat, weights=y[keep].astype(np.float64), minlength=n * k).reshape(n, k)
    return all_counts[:, ::-1].cumsum(1)[:, ::-1], tp_counts[:, ::-1].cumsum(1)[:, ::-1]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """``sum over positives of precision@rank / #positives``, ranking by descending score (stable)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].sum() / n_pos)


def aupr_micro(scores: np.ndarray, truth: np.ndarray) -> float:
    """Pair-centric AUPR: average precision over all (protein, term) pairs."""
    return average_precision(scores, truth)


def aupr_macro(scores: np.ndarray, truth: np.ndarray) -> float:
    """Term-centric AUPR: mean over terms with at least one positive of the per-term average precision."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth).astype(bool)
    vals = [average_precision(s[:, t], y[:, t]) for t in range(y.shape[1]) if y[:, t].any()]
    return float(np.mean(vals)) if vals else float("nan")


def filtered_term_ranks(scores: np.ndarray, truth: np.ndarray, targets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rank of each target term of each protein among the protein's *false* terms (filtered setting).

    ``rank = 1 + #(false terms scored higher) + #(false terms tied) / 2`` — the other true terms are
    left out (so a protein's ancestors of its target do not push it down), and ties count half
    (the mean of the optimistic and pessimistic rank; a constant score gives the middle rank, not 1).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth).astype(bool)
    out = []
    for i, tgt in enumerate(targets):
        tgt = np.asarray(tgt, dtype=np.int64)
        if len(tgt) == 0:
            out.append(np.zeros(0))
            continue
        neg = np.sort(s[i][~y[i]])
        v = s[i, tgt]
        higher = len(neg) - np.searchsorted(neg, v, side="right")
        tied = np.searchsorted(neg, v, side="right") - np.searchsorted(neg, v, side="left")
        out.append(1.0 + higher + tied / 2.0)
    return out


def go_prediction_metrics(
    scores: np.ndarray, truth: np.ndarray, specific: Sequence[np.ndarray], ks: Sequence[int] = (1, 10),
    aupr: bool = True,
) -> dict[str, float]:
    """Fmax (CAFA thresholds, protein-centric), AUPR (micro), and the retrieval view of the same scores:
    MRR and hits@k over each protein's most specific true terms.

    ``scores``/``truth``: ``(proteins x terms)``, both already propagated to ancestors; ``specific[i]``:
    the most specific true terms of protein ``i``. MRR = mean over proteins of the mean over their
    specific terms of ``1 / rank`` (:func:`filtered_term_ranks`); hits@k likewise with ``rank <= k``.
    Proteins without a true term are left out (their number is reported as ``n_proteins``' complement).
    ``aupr=False`` skips the AUPR (it sorts every (protein, term) pair; the slow part on large ontologies).
    """
    y = np.asarray(truth).astype(bool)
    has = y.any(1)
    s = np.asarray(scores, dtype=np.float64)[has]
    y = y[has]
    spec = [specific[i] for i in np.flatnonzero(has)]
    fm = fmax(s, y)
    ranks = filtered_term_ranks(s, y, spec)
    res = {"fmax": fm.fmax, "fmax_threshold": fm.threshold, "fmax_coverage": fm.coverage,
           **({"aupr": aupr_micro(s, y)} if aupr else {}),
           "mrr": float(np.mean([np.mean(1.0 / r) for r in ranks if len(r)])),
           "n_proteins": int(has.sum())}
    for k in ks:
        res[f"hits@{k}"] = float(np.mean([np.mean(r <= k) for r in ranks if len(r)]))
    return res


# ---- a GO split's ground truth (hypalign.data.go_split) ----------------------------------------------------
def evaluate_scores(gsd: GOSplitData, ontology: str, part: str, scores: np.ndarray,
                    fmax_only: bool = False, fast: bool = False, rows: np.ndarray | None = None) -> dict[str, float]:
    """GO metrics of a ``(proteins of part x terms of ontology)`` score matrix (propagated by the caller);
    ``rows`` (boolean, one per protein): only those proteins.

    As in CAFA, the ontology's root term is left out (every protein has it; predicting it is free),
    and proteins annotated with the root alone do not count."""
    y = gsd.truth[ontology][part]
    if scores.shape != y.shape:
        raise ValueError(f"scores shaped {scores.shape}, expected {y.shape} ({part} proteins x {ontology} terms)")
    if rows is not None:
        y, scores = y[rows], scores[rows]
    root = gsd.ontologies[ontology].root
    keep = np.ones(y.shape[1], dtype=bool)
    keep[root] = False
    if fmax_only:
        return {"fmax": fmax(scores[:, keep], y[:, keep]).fmax}
    remap = np.cumsum(keep) - 1
    specific = gsd.specific[ontology][part]
    if rows is not None:
        specific = [t for t, r in zip(specific, rows, strict=True) if r]
    spec = [remap[t[t != root]] for t in specific]
    return go_prediction_metrics(scores[:, keep], y[:, keep], spec, aupr=not fast)


def fmax_metric(gsd: GOSplitData, ontology: str, part: str = "valid") -> FmaxByProtein:
    """Fmax of ``part`` (root left out, as :func:`evaluate_scores`) as a callable that comes apart by protein,
    for the blend-weight searches (:func:`~hypalign.eval.baselines.choose_group_alphas`)."""
    keep = np.ones(gsd.truth[ontology][part].shape[1], dtype=bool)
    keep[gsd.ontologies[ontology].root] = False
    return FmaxByProtein(gsd.truth[ontology][part], columns=keep)


def summarise_metrics(gsd: GOSplitData, part: str, scores: dict[str, np.ndarray],
                      full: bool = True) -> dict[str, float]:
    """``{"BP/fmax": …, …, "fmax": mean over ontologies, "mrr": mean}`` of per-ontology score matrices."""
    out: dict[str, float] = {}
    for o, s in scores.items():
        res = evaluate_scores(gsd, o, part, s, fast=not full)
        out.update({f"{o}/{k}": v for k, v in res.items() if k != "n_proteins"})
    out["fmax"] = float(np.mean([out[f"{o}/fmax"] for o in scores]))
    out["mrr"] = float(np.mean([out[f"{o}/mrr"] for o in scores]))
    return out
