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

import numpy as np

CAFA_THRESHOLDS = np.round(np.arange(1, 101) / 100.0, 2)


def propagate(matrix: np.ndarray, ancestors: Sequence[Sequence[int]], mode: str = "max") -> np.ndarray:
    """Propagate a ``(proteins x terms)`` matrix to ancestors.

    ``ancestors[t]`` lists every ancestor of term ``t`` (transitively; not ``t`` itself). ``mode="max"``
    gives each ancestor the maximum over itself and its descendants (scores and 0/1 labels alike).
    """
    if mode != "max":
        raise ValueError("only mode='max' is supported")
    out = np.array(matrix, copy=True)
    if len(ancestors) != out.shape[1]:
        raise ValueError(f"ancestors has {len(ancestors)} entries for {out.shape[1]} terms")
    for t, anc in enumerate(ancestors):
        if len(anc):
            cols = np.asarray(anc, dtype=np.int64)
            out[:, cols] = np.maximum(out[:, cols], out[:, t : t + 1])
    return out


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
    n_true = y.sum(1)
    best = FmaxResult(0.0, float("nan"), 0.0, 0.0, 0.0)
    for t in np.asarray(thresholds, dtype=np.float64):
        pred = s >= t
        n_pred = pred.sum(1)
        tp = (pred & y).sum(1)
        covered = n_pred > 0
        if not covered.any():
            continue
        pr = float(np.mean(tp[covered] / n_pred[covered]))
        rc = float(np.mean(tp / n_true))
        f = 2 * pr * rc / (pr + rc) if pr + rc > 0 else 0.0
        if f > best.fmax:
            best = FmaxResult(f, float(t), pr, rc, float(covered.mean()))
    return best


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
