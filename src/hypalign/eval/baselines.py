"""GO function prediction baselines, scored like any model: ``(proteins x terms)`` score matrices.

* **term frequency** (CAFA's "naive"): every protein gets ``score(t) = share of training proteins
  annotated with t`` (annotations propagated), the same for all.
* **DIAMOND transfer** (DeepGOPlus' "DiamondScore", Kulmanov & Hoehndorf 2020): with the hits ``h``
  of a query against the training proteins (DIAMOND blastp), ``score(t) = sum_h bits_h [t in
  terms(target_h)] / sum_h bits_h``; a query without hits scores 0 everywhere.
* **blend** ``alpha * A + (1 - alpha) * B`` (DeepGOPlus combines DIAMOND with its CNN this way);
  used for "DIAMOND blended with frequency" and "model + DIAMOND". ``alpha`` is chosen on the
  validation split (:func:`choose_alpha`), one per identity group of the query's best hit
  (:func:`identity_groups`, :func:`choose_group_alphas`): a close homolog's annotations deserve more
  weight than a remote one's; the queries without a hit form a group of their own
  (:func:`no_hit_group`), where the weight scales ``B`` down (CAFA's precision counts only proteins
  with a prediction above the threshold).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hypalign.data.seqtools import Hits
from hypalign.eval.function import evaluate_scores, fmax_metric

if TYPE_CHECKING:
    from hypalign.data.go_split import GOSplitData

ALPHAS = tuple(np.round(np.arange(0.0, 1.01, 0.1), 2))


def labelled_rows(train_truth: Any) -> np.ndarray:
    """``(rows,)`` bool: the rows of a 0/1 label matrix (dense or scipy CSR) with any label. A training protein
    not annotated in an ontology is unknown there: it neither counts in a term's frequency nor votes in a transfer."""
    if hasattr(train_truth, "indptr"):
        return np.diff(train_truth.indptr) > 0
    return np.asarray(train_truth).any(1)


def term_frequency_scores(train_truth: Any, n_queries: int) -> np.ndarray:
    """``(n_queries x terms)`` float32, every row the training annotation frequency of each term: the share of the
    training proteins annotated in the ontology (:func:`labelled_rows`) that have the term.
    ``train_truth``: propagated ``(train proteins x terms)`` 0/1 matrix, dense or scipy sparse."""
    n = max(int(labelled_rows(train_truth).sum()), 1)
    freq = np.asarray(train_truth.sum(0), dtype=np.float64).ravel() / n
    return np.broadcast_to(freq.astype(np.float32), (n_queries, len(freq))).copy()


def diamond_transfer_scores(hits: Hits, train_truth: Any, n_queries: int) -> np.ndarray:
    """Bitscore-weighted vote of the hits' (propagated) annotations; 0 for queries without a hit.

    One sparse product ``W @ Y``: ``W[q, r]`` = bitscore of the hit of query ``q`` on training protein
    ``r`` over the sum of ``q``'s bitscores; ``Y`` dense or scipy sparse."""
    return neighbour_transfer_scores(hits.query, hits.target, hits.bitscore, train_truth, n_queries)


def neighbour_transfer_scores(query: np.ndarray, target: np.ndarray, weight: np.ndarray, train_truth: Any,
                              n_queries: int) -> np.ndarray:
    """``score(q, t) = sum_n w_qn [t in terms(n)] / sum_n w_qn`` over the neighbours ``n`` of each query:
    one sparse product ``W @ Y`` (``W`` from the ``(query, target, weight)`` triples, rows normalised;
    ``Y`` the propagated ``(train proteins x terms)`` matrix, dense or scipy sparse). Queries without a
    neighbour score 0. Neighbours without any label (training proteins not annotated in the ontology) are left
    out: they carry no evidence either way. DIAMOND transfer weighs by bitscore; :func:`embedding_transfer_scores`
    by distance."""
    import scipy.sparse as sp

    known = labelled_rows(train_truth)[np.asarray(target, dtype=np.int64)]
    if not known.all():
        query, target, weight = np.asarray(query)[known], np.asarray(target)[known], np.asarray(weight)[known]
    if len(query) == 0:
        return np.zeros((n_queries, train_truth.shape[1]), dtype=np.float32)
    w = sp.csr_matrix((np.asarray(weight, np.float64), (query, target)), shape=(n_queries, train_truth.shape[0]))
    tot = np.asarray(w.sum(1)).ravel()
    tot[tot == 0] = 1.0
    out = (sp.diags(1.0 / tot) @ w) @ train_truth
    return np.asarray(out.todense() if sp.issparse(out) else out, dtype=np.float32)


def embedding_transfer_scores(dist: np.ndarray, index: np.ndarray, train_truth: Any, tau: float) -> np.ndarray:
    """Nearest-neighbour transfer in an embedding space: the ``k`` nearest training proteins of each query
    (``dist``, ``index``: ``(queries, k)`` from :func:`hypalign.search.knn`, nearest first) vote with weights
    ``softmax(-d / tau)`` over the ``k`` (``tau``: a temperature in the geometry's distance units)."""
    dist, index = np.asarray(dist, np.float64), np.asarray(index)
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    ok = index >= 0
    w = np.where(ok, np.exp(-(dist - dist[:, :1]) / tau), 0.0)  # shifted by the nearest: no underflow
    q = np.broadcast_to(np.arange(len(index))[:, None], index.shape)
    return neighbour_transfer_scores(q[ok], index[ok], w[ok], train_truth, len(index))


def has_hit(hits: Hits, n_queries: int) -> np.ndarray:
    m = np.zeros(n_queries, dtype=bool)
    m[hits.query] = True
    return m


def blend(a: np.ndarray, b: np.ndarray, alpha: float, a_present: np.ndarray | None = None) -> np.ndarray:
    """``alpha * a + (1 - alpha) * b``; rows where ``a_present`` is False take ``b`` alone."""
    out = (alpha * a + (1.0 - alpha) * b).astype(np.float32)
    if a_present is not None:
        out[~a_present] = b[~a_present]
    return out


def choose_alpha(
    metric: Callable[[np.ndarray], float], a: np.ndarray, b: np.ndarray, a_present: np.ndarray | None = None,
    alphas: Sequence[float] = ALPHAS,
) -> tuple[float, float]:
    """The ``alpha`` maximising ``metric(blend(a, b, alpha))`` (on validation data) and that value."""
    best = (float(alphas[0]), -np.inf)
    for al in alphas:
        v = metric(blend(a, b, float(al), a_present))
        if v > best[1]:
            best = (float(al), float(v))
    return best


#: best-hit percent identity bounds of the groups that get their own blend weight
IDENTITY_BOUNDS = (40.0, 70.0)


def best_hits(hits: Hits) -> np.ndarray:
    """Row of each query's best hit (highest bitscore) in ``hits``, one per query that has any, by query."""
    order = np.lexsort((-hits.bitscore, hits.query))
    return order[np.unique(hits.query[order], return_index=True)[1]]


def identity_groups(hits: Hits, n_queries: int, bounds: Sequence[float] = IDENTITY_BOUNDS) -> np.ndarray:
    """Group of each query by the percent identity of its best hit (:func:`best_hits`): ``-1`` without a hit,
    else ``searchsorted(bounds, pident, 'right')`` (default: 0 below 40 %, 1 for 40-70 %, 2 from 70 %)."""
    g = np.full(n_queries, -1, dtype=np.int64)
    best = best_hits(hits)
    g[hits.query[best]] = np.searchsorted(np.asarray(bounds, np.float64), hits.pident[best], side="right")
    return g


def no_hit_group(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``groups`` with the queries without a hit (``-1``) as a group of their own, number ``n_groups``: blended
    with a weight of their own, ``alpha * 0 + (1 - alpha) * b``, the other scores (frequency, the model) are
    scaled down there so that they enter the predictions only below a higher threshold (``alpha = 1``: no
    prediction without a hit, as DIAMOND alone). CAFA's protein-centric precision averages only over proteins
    with a prediction above the threshold, so this weight decides how much the proteins without a hit cost it."""
    g = np.asarray(groups)
    return np.where(g < 0, n_groups, g)


def blend_groups(a: np.ndarray, b: np.ndarray, alphas: Sequence[float], groups: np.ndarray) -> np.ndarray:
    """Row ``i`` is ``alphas[g] * a + (1 - alphas[g]) * b`` with ``g = groups[i]``; ``b`` alone where ``g < 0``."""
    al = np.where(groups >= 0, np.asarray(alphas, np.float64)[np.maximum(groups, 0)], 0.0)[:, None]
    return (al * a + (1.0 - al) * b).astype(np.float32)


def choose_group_alphas(
    metric: Callable[[np.ndarray], float], a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_groups: int,
    alphas: Sequence[float] = ALPHAS, rounds: int = 2,
) -> tuple[list[float], float]:
    """Per-group ``alpha`` maximising ``metric(blend_groups(a, b, ·, groups))`` (on validation data):
    the best single ``alpha`` for all groups first, then coordinate ascent, one group at a time, ``rounds``
    times (a group changes only when the metric strictly improves).

    A ``metric`` that comes apart by row (``counts(scores)`` -> per-row statistics, ``value(counts)`` ->
    the metric, as :class:`hypalign.eval.function.FmaxByProtein`) is searched without re-scoring: each
    ``alpha``'s blend is counted once and every assignment of weights to groups is assembled from those
    rows (the same values, ``len(alphas)`` passes over the matrices instead of ~6 times as many)."""
    groups = np.asarray(groups)
    if hasattr(metric, "counts") and hasattr(metric, "value"):
        tables = np.stack([metric.counts(blend_groups(a, b, [float(al)] * n_groups, groups)) for al in alphas])
        rows = np.arange(len(groups))
        index = {float(al): i for i, al in enumerate(alphas)}

        def score(weights: list[float]) -> float:
            pick = np.array([index[w] for w in weights])[np.maximum(groups, 0)]
            return float(metric.value(tables[pick, rows]))  # type: ignore[attr-defined]
    else:
        def score(weights: list[float]) -> float:
            return float(metric(blend_groups(a, b, weights, groups)))

    best_al, best = float(alphas[0]), -np.inf
    for al in alphas:  # one weight for every group
        v = score([float(al)] * n_groups)
        if v > best:
            best_al, best = float(al), v
    cur = [best_al] * n_groups
    for _ in range(rounds):
        changed = False
        for k in range(n_groups):
            if not (groups == k).any():
                continue
            for cand in alphas:
                if float(cand) == cur[k]:
                    continue
                trial = [*cur[:k], float(cand), *cur[k + 1 :]]
                v = score(trial)
                if v > best:
                    cur, best, changed = trial, float(v), True
        if not changed:
            break
    return cur, best


# ---- the sequence baselines of a GO split: frequency, DIAMOND, their blend, model + DIAMOND ----------------------
def diamond_hits(gsd: GOSplitData, part: str, threads: int | None = None) -> Hits:
    """DIAMOND blastp (``--more-sensitive``, e <= 1e-3, 25 targets) of a held-out part against train."""
    from hypalign.data.seqtools import diamond_blastp

    return diamond_blastp(gsd.accessions(part), gsd.sequences(part), gsd.accessions("train"),
                          gsd.sequences("train"), threads=threads)


def fit_group_blend(gsd: GOSplitData, ontology: str, dia: dict[str, np.ndarray], other: dict[str, np.ndarray],
                    groups: dict[str, np.ndarray], n_groups: int, part: str = "test",
                    ) -> tuple[list[float], np.ndarray]:
    """DIAMOND transfer blended with ``other`` scores (frequency, a model), one weight per group of ``groups``
    (:func:`identity_groups`, optionally with :func:`no_hit_group`), the weights chosen by Fmax on the valid proteins
    (:func:`choose_group_alphas`). ``dia``/``other``/``groups``: ``{"valid": …, part: …}``. Returns the weights and
    ``part``'s blended scores."""
    alphas, _ = choose_group_alphas(fmax_metric(gsd, ontology), dia["valid"], other["valid"], groups["valid"], n_groups)
    return alphas, blend_groups(dia[part], other[part], alphas, groups[part])


def run_baselines(gsd: GOSplitData, part: str = "test", threads: int | None = None,
                  say: Any = None, aupr: bool = True) -> dict[str, Any]:
    """Term frequency, DIAMOND transfer, DIAMOND blended with frequency (one weight per identity group of
    the best hit and one for the proteins without a hit, :func:`~hypalign.eval.baselines.no_hit_group`,
    :func:`~hypalign.eval.baselines.choose_group_alphas`, chosen by Fmax on valid).

    Returns ``{"metrics": {method: {ontology: metrics}}, "alpha": {ontology: [alpha per group]}, "coverage":
    share of ``part`` proteins with any DIAMOND hit, "scores": {method: {ontology: matrix}}, "scores_valid":
    the frequency and DIAMOND matrices of the validation proteins, "groups": {part: identity group of each
    protein's best hit (-1: no hit)}}``. ``aupr=False``: every metric but AUPR (the slowest; for scripts that
    do not report it).
    """
    log = say if callable(say) else (lambda msg: None)
    t = time.perf_counter()
    hits = {p: diamond_hits(gsd, p, threads) for p in ("valid", part)}
    log(f"DIAMOND: {time.perf_counter() - t:.0f} s")
    groups = {p: identity_groups(hits[p], len(gsd.rows[p])) for p in hits}
    n_groups = len(IDENTITY_BOUNDS) + 1
    weighted = {p: no_hit_group(g, n_groups) for p, g in groups.items()}  # no hit: a weight of its own
    metrics: dict[str, dict[str, dict[str, float]]] = {"frequency": {}, "diamond": {}, "diamond+frequency": {}}
    scores: dict[str, dict[str, np.ndarray]] = {k: {} for k in metrics}
    scores_valid: dict[str, dict[str, np.ndarray]] = {"frequency": {}, "diamond": {}}
    alpha: dict[str, list[float]] = {}
    for o in gsd.ontologies:
        y = gsd.truth[o]["train"]
        freq = {p: term_frequency_scores(y, len(gsd.rows[p])) for p in hits}
        dia = {p: diamond_transfer_scores(hits[p], y, len(gsd.rows[p])) for p in hits}

        alpha[o], blended = fit_group_blend(gsd, o, dia, freq, weighted, n_groups + 1, part)
        scores_valid["frequency"][o], scores_valid["diamond"][o] = freq["valid"], dia["valid"]
        for name, s in (("frequency", freq[part]), ("diamond", dia[part]), ("diamond+frequency", blended)):
            metrics[name][o] = evaluate_scores(gsd, o, part, s, fast=not aupr)
            scores[name][o] = s
        log(f"{o}: " + ", ".join(f"{k} Fmax {metrics[k][o]['fmax']:.3f} MRR {metrics[k][o]['mrr']:.3f}"
                                 for k in metrics) + f" (alpha {alpha[o]})")
    return {"metrics": metrics, "alpha": alpha, "coverage": float((groups[part] >= 0).mean()), "scores": scores,
            "scores_valid": scores_valid, "hits": hits, "groups": groups}


def blend_with_diamond(gsd: GOSplitData, base: dict[str, Any], scores: dict[str, dict[str, np.ndarray]],
                       part: str = "test", aupr: bool = False, keep_scores: dict[str, np.ndarray] | None = None,
                       ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """"Model + DIAMOND": the model's GO scores (``scores[part][ontology]``, ``scores["valid"]`` too) blended
    with DIAMOND transfer as the baselines blend it with frequency (one weight per identity group of the
    best hit and one that scales the model's scores where DIAMOND finds nothing, chosen by Fmax on valid:
    :func:`~hypalign.eval.baselines.no_hit_group`). ``base``: the result of
    :func:`run_baselines` on the same split and part. Returns Fmax, MRR and hits@k per ontology (and AUPR
    with ``aupr``) and the weights; ``keep_scores`` (a dict) receives ``part``'s blended matrix per ontology."""
    out: dict[str, float] = {}
    alphas: dict[str, list[float]] = {}
    n_groups = len(IDENTITY_BOUNDS) + 1
    weighted = {p: no_hit_group(base["groups"][p], n_groups) for p in ("valid", part)}
    for o in gsd.ontologies:
        dia = {"valid": base["scores_valid"]["diamond"][o], part: base["scores"]["diamond"][o]}
        alphas[o], blended = fit_group_blend(gsd, o, dia, {p: scores[p][o] for p in ("valid", part)}, weighted,
                                             n_groups + 1, part)
        if keep_scores is not None:
            keep_scores[o] = blended
        res = evaluate_scores(gsd, o, part, blended, fast=not aupr)
        out.update({f"{o}/{k}": v for k, v in res.items() if k != "n_proteins"})
    return out, alphas


def subset_metrics(gsd: GOSplitData, scores: dict[str, dict[str, np.ndarray]], rows: np.ndarray, part: str = "test",
                   aupr: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {ontology: metrics}}`` of each method's ``part`` scores (``{method: {ontology: matrix}}``) on the
    proteins ``rows`` (bool) only — e.g. those without a DIAMOND hit in train (``base["groups"][part] < 0`` of
    :func:`run_baselines`), where homology transfer has nothing to give. An ontology none of those proteins is
    annotated in is left out."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    rows = np.asarray(rows, dtype=bool)
    for method, per in scores.items():
        out[method] = {o: evaluate_scores(gsd, o, part, s, fast=not aupr, rows=rows) for o, s in per.items()
                       if (gsd.annotated(o, part) & rows).any()}
    return out
