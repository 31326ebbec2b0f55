"""Hierarchy embedding recipe (Nickel & Kiela 2017 Poincaré embeddings; 2018 Lorentz model).

Trains :class:`hypalign.models.hierarchy.HierarchyEmbedding` on the transitive closure of a
hierarchy with the shared :class:`hypalign.train.Trainer`:

* every closure pair ``(u, v)`` (``v`` an ancestor of ``u``) is a positive, with ``negatives``
  uniformly drawn nodes that are neither ``u`` nor ancestors of ``u`` (drawn again each time;
  candidates that hit an ancestor are masked out rather than redrawn); ``local_negatives`` of them
  may instead be drawn uniformly from the descendants of ``v`` (``u``'s siblings, cousins and own
  descendants under ``v``: the nodes that compete with ``v`` in ``u``'s ranking — a uniform draw from
  80,000 nouns almost never finds them);
* loss: :mod:`hypalign.losses.hierarchy`; ``loss="nll"`` the papers' softmax over the negatives
  (burn-in: the first ``burnin_epochs`` at ``lr / 10``), or ``loss="warp"``: the rank-weighted margin loss
  (:func:`hypalign.losses.hierarchy.rank_hinge_loss`) with the ``negatives`` drawn from each node's
  ``hard_pool`` nearest non-ancestors, mined again with the exact ranks every ``mine_every`` epochs
  (:func:`hypalign.losses.hierarchy.mine_nearest_non_ancestors`) — a refinement of a trained embedding
  (``init_from``) that goes after the reconstruction mean rank directly;
* optimiser: ``sparse_adam`` (lazy Adam on the rows a batch touches) on the model's own
  coordinates (default: for Lorentz these are the space components, a global chart of the
  hyperboloid, so no projection is needed), ``rsgd``
  (Riemannian SGD as in the papers: exact exponential map on the hyperboloid, rescaled gradient
  plus projection in the ball), or ``radam`` (:class:`hypalign.train.optim.RiemannianAdam`: steps of
  about ``lr`` in geodesic length wherever a point lies; with ``dtype="float64"`` in the Poincaré ball
  this is what reaches deep hierarchies such as WordNet's 19 noun levels);
* initialisation: uniform near the origin as in the papers (``init="random"``), or from the hierarchy
  itself, built from the training edges only: ``init="hierarchy"``
  (:func:`hypalign.models.hierarchy.hierarchy_init`, each node near its parent's direction one level
  further out) or ``init="combinatorial"`` (:func:`hypalign.models.hierarchy.combinatorial_construction`,
  nested shadow cones: trees come out nearly exact before any training), or ``init_from`` a finished
  run of the same hierarchy and geometry (its ``embeddings.npy``);
* evaluation: reconstruction mean rank / MAP (:func:`hypalign.eval.hierarchy.reconstruction`) and,
  when ``link_prediction > 0``, ranks of held-out edges of the transitive reduction.

Sources: ``wordnet:nouns``, ``wordnet:<synset>`` (a subtree, e.g. ``wordnet:mammal.n.01``),
``go:BP|MF|CC``, ``file:<path>`` (a child,parent edge list).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign.data.go import go_hierarchy
from hypalign.data.hierarchy import Hierarchy, read_edge_list, wordnet_noun_hierarchy
from hypalign.errors import InputError
from hypalign.eval.hierarchy import link_prediction, reconstruction
from hypalign.io import atomic_write_json, atomic_write_text, save_npy
from hypalign.losses.hierarchy import rank_hinge_loss
from hypalign.models.hierarchy import (
    HIERARCHY_MODELS,
    HierarchyEmbedding,
    combinatorial_construction,
    hierarchy_init,
)
from hypalign.objectives.miners import mine_nearest_non_ancestors, negative_mask
from hypalign.train import Task, TrainConfig, Trainer, resolve_device
from hypalign.train.checkpoint import unwrap

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class HierarchyConfig:
    source: str
    dim: int = 10
    model: str = "lorentz"
    c: float = 1.0
    negatives: int = 50
    batch_size: int = 1024
    link_prediction: float = 0.0  # fraction of transitive-reduction edges held out
    eval_nodes: int = 2000  # nodes sampled for evaluations during training (0 = all); the final one uses all
    drop_invalid: bool = False
    init_scale: float = 1e-3
    init: str = "random"  # random (the papers) | hierarchy (hierarchy_init) | combinatorial (construction)
    init_spread: float = 1.5  # hierarchy_init
    init_step: float = 1.0
    init_decay: float = 0.5
    init_margin: float = 0.3  # combinatorial_construction
    init_cap: float = 1.4
    local_negatives: int = 0  # of the negatives, this many drawn from the descendants of the positive ancestor
    dtype: str = "float32"  # float32 | float64 (the embedding table; float64 for deep hierarchies)
    loss: str = "nll"  # nll (Nickel & Kiela softmax) | warp (rank-weighted margin on mined hard negatives)
    margin: float = 0.1  # warp
    hard_pool: int = 32  # warp: nearest non-ancestors kept per node; the negatives are drawn from them
    mine_every: int = 1  # warp: epochs between minings (each one also gives the exact ranks)
    init_from: str = ""  # a finished run directory of the same hierarchy and geometry: start from its embeddings


def load_source(source: str, drop_invalid: bool = False) -> Hierarchy:
    """``wordnet:nouns``, ``wordnet:<synset>``, ``go:<BP|MF|CC>`` or ``file:<path>``."""
    kind, _, arg = source.partition(":")
    if not arg:
        raise InputError(f"source {source!r}: expected wordnet:nouns, wordnet:<synset>, go:BP|MF|CC or file:<path>")
    if kind == "wordnet":
        h = wordnet_noun_hierarchy()
        return h if arg == "nouns" else h.subtree(arg)
    if kind == "go":
        return go_hierarchy(arg)
    if kind == "file":
        return read_edge_list(arg, drop_invalid=drop_invalid)
    raise InputError(f"source {source!r}: unknown kind {kind!r}; expected wordnet, go or file")


def transitive_reduction(h: Hierarchy, ancestors: list[np.ndarray] | None = None) -> np.ndarray:
    """Direct edges ``(child, parent)`` not implied by another path (the Hasse diagram)."""
    anc = ancestors if ancestors is not None else h.ancestors()
    parents = h.parents()
    keep = []
    for c, ps in enumerate(parents):
        for p in ps:
            if not any(q != p and p in set(anc[q].tolist()) for q in ps):
                keep.append((c, p))
    return np.asarray(sorted(set(keep)), dtype=np.int64).reshape(-1, 2)


def split_link_prediction(
    h: Hierarchy, fraction: float, seed: int = 0, ancestors: list[np.ndarray] | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Hold out ``fraction`` of the transitive-reduction edges.

    Returns the training ancestors of every node (the full closure minus the held-out pairs: the
    other ancestors stay, so a held-out parent has to be inferred from the rest of the
    hierarchy) and the held-out ``(child, parent)`` pairs.
    """
    anc = ancestors if ancestors is not None else h.ancestors()
    red = transitive_reduction(h, anc)
    rng = np.random.default_rng(seed)
    n_test = round(fraction * len(red))
    test = red[np.sort(rng.choice(len(red), size=n_test, replace=False))] if n_test else red[:0]
    held: dict[int, set[int]] = {}
    for c, p in test.tolist():
        held.setdefault(c, set()).add(p)
    train = [a if v not in held else np.asarray([x for x in a.tolist() if x not in held[v]], dtype=np.int64)
             for v, a in enumerate(anc)]
    return train, test


def _csr(ancestors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(ancestors) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(a) for a in ancestors])
    indices = np.concatenate(ancestors).astype(np.int64) if indptr[-1] else np.zeros(0, dtype=np.int64)
    return indptr, indices


class HierarchyTask(Task):
    """Closure pairs in shuffled batches, fresh negatives per batch; evaluation by reconstruction."""

    def __init__(self, hierarchy: Hierarchy, cfg: HierarchyConfig, seed: int = 0) -> None:
        if cfg.model not in HIERARCHY_MODELS:
            raise InputError(f"model {cfg.model!r}: expected one of {', '.join(HIERARCHY_MODELS)}")
        if cfg.negatives < 1 or cfg.batch_size < 1:
            raise InputError("negatives and batch size must be >= 1")
        if not 0 <= cfg.local_negatives <= cfg.negatives:
            raise InputError(f"local negatives {cfg.local_negatives}: expected 0 to negatives ({cfg.negatives})")
        if cfg.dtype not in DTYPES:
            raise InputError(f"dtype {cfg.dtype!r}: expected one of {', '.join(DTYPES)}")
        if cfg.loss not in ("nll", "warp"):
            raise InputError(f"loss {cfg.loss!r}: expected nll or warp")
        if cfg.loss == "warp":
            if cfg.local_negatives:
                raise InputError("loss warp draws every negative from the mined pool: drop --local-negatives")
            if not 1 <= cfg.negatives <= cfg.hard_pool:
                raise InputError(f"loss warp: negatives ({cfg.negatives}) must be 1 to the hard pool ({cfg.hard_pool})")
            if cfg.mine_every < 1:
                raise InputError(f"mine every {cfg.mine_every}: expected >= 1 epochs")
            if cfg.margin < 0:
                raise InputError(f"margin {cfg.margin}: expected >= 0")
        if cfg.init_from and cfg.init != "random":
            raise InputError(f"init {cfg.init!r} and init from {cfg.init_from!r}: choose one")
        dtype = DTYPES[cfg.dtype]
        self.h, self.cfg, self.seed = hierarchy, cfg, seed
        self.all_ancestors = hierarchy.ancestors()
        if cfg.link_prediction > 0:
            self.train_ancestors, self.test_edges = split_link_prediction(
                hierarchy, cfg.link_prediction, seed, self.all_ancestors
            )
        else:
            self.train_ancestors, self.test_edges = self.all_ancestors, np.zeros((0, 2), dtype=np.int64)
        self.indptr, self.indices = _csr(self.train_ancestors)
        self.pairs = torch.from_numpy(
            np.column_stack([np.repeat(np.arange(hierarchy.n_nodes), np.diff(self.indptr)), self.indices])
        )
        if len(self.pairs) == 0:
            raise InputError("the hierarchy has no edges to train on")
        # descendants of every node (the closure read the other way), for local negatives
        by_ancestor = np.argsort(self.indices, kind="stable")
        self.desc_indices = np.ascontiguousarray(self.pairs[:, 0].numpy()[by_ancestor])
        self.desc_indptr = np.zeros(hierarchy.n_nodes + 1, dtype=np.int64)
        self.n_desc = np.bincount(self.indices, minlength=hierarchy.n_nodes)
        self.desc_indptr[1:] = np.cumsum(self.n_desc)
        gen = torch.Generator().manual_seed(seed)
        self.model: HierarchyEmbedding = HierarchyEmbedding(
            hierarchy.n_nodes, cfg.dim, cfg.model, cfg.c, cfg.init_scale, generator=gen, dtype=dtype
        )
        t0 = time.perf_counter()
        if cfg.init in ("hierarchy", "combinatorial"):  # from the training edges only: held-out links place nothing
            held = {tuple(e) for e in self.test_edges.tolist()}
            parents = [[p for p in ps if (v, p) not in held] for v, ps in enumerate(hierarchy.parents())]
            order = hierarchy.topological_order()
            if cfg.init == "hierarchy":
                x = hierarchy_init(parents, order, cfg.dim, cfg.model, cfg.c, cfg.init_spread, cfg.init_step,
                                   cfg.init_decay, seed, dtype=dtype)
            else:
                if cfg.dim < 2:
                    raise InputError(f"init combinatorial needs dim >= 2, got {cfg.dim}")
                x = combinatorial_construction(parents, order, cfg.dim, cfg.model, cfg.c, cfg.init_margin,
                                               cfg.init_cap, seed, dtype=dtype)
            with torch.no_grad():
                self.model.weight.copy_(x)
        elif cfg.init != "random":
            raise InputError(f"init {cfg.init!r}: expected random, hierarchy or combinatorial")
        if cfg.init_from:
            with torch.no_grad():
                self.model.weight.copy_(torch.from_numpy(_embeddings_of_run(cfg.init_from, hierarchy, cfg)))
        self.init_seconds = time.perf_counter() - t0  # the placement alone
        self.pool: torch.Tensor | None = None  # loss warp: mined nearest non-ancestors (N, hard_pool)
        self.pair_ranks: torch.Tensor | None = None  # and the ranks of every training pair at that mining
        self.mined_epoch = -1
        self.mine_seconds = 0.0
        rng = np.random.default_rng(seed)
        n = hierarchy.n_nodes
        self.eval_sample = (
            None if not cfg.eval_nodes or cfg.eval_nodes >= n else np.sort(rng.choice(n, cfg.eval_nodes, replace=False))
        )

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Shuffled closure-pair indices in chunks of ``batch_size``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return list(torch.randperm(len(self.pairs), generator=g).split(self.cfg.batch_size))

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """``loss="warp"``: mine again when due (every ``mine_every`` epochs, with the weights of that moment;
        idempotent for the epoch it last mined, which a resumed run restores from the checkpoint)."""
        if self.cfg.loss == "warp" and (self.pool is None or (epoch != self.mined_epoch
                                                              and epoch % self.cfg.mine_every == 0)):
            self.mine(model)
            self.mined_epoch = epoch

    def mine(self, model: nn.Module) -> None:
        """Nearest non-ancestors of every node and the exact rank of every training pair, from ``model``."""
        m: HierarchyEmbedding = model  # type: ignore[assignment]
        t0 = time.perf_counter()
        pool, ranks = mine_nearest_non_ancestors(m.weight, self.indptr, self.indices, m.model, m.c,
                                                 self.cfg.hard_pool)
        self.pool, self.pair_ranks = torch.from_numpy(pool), torch.from_numpy(ranks)
        self.mine_seconds += time.perf_counter() - t0

    def warp_loss(self, model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`rank_hinge_loss` on ``negatives`` drawn from each ``u``'s mined pool (rows gathered with
        sparse gradients, so the optimizers update only the rows the batch touched)."""
        m: HierarchyEmbedding = model  # type: ignore[assignment]
        if self.pool is None:  # outside the trainer (a loss evaluated by hand): mine now
            self.on_epoch_start(m, 0)
        assert self.pool is not None and self.pair_ranks is not None
        e = self.pairs[batch]
        u, v = e[:, 0], e[:, 1]
        k = self.cfg.negatives
        neg = self.pool[u].gather(1, torch.randint(self.cfg.hard_pool, (len(u), k)))
        mask = neg >= 0
        neg = neg.clamp_min(0)
        weight = ((self.pair_ranks[batch] - 1).to(m.weight.dtype) / self.cfg.hard_pool).clamp_min(1.0)
        xu = nn.functional.embedding(u, m.weight, sparse=True)
        geo = m.geometry
        d_pos = geo.dist(xu, nn.functional.embedding(v, m.weight, sparse=True))
        d_neg = geo.dist(xu.unsqueeze(1), nn.functional.embedding(neg, m.weight, sparse=True))
        loss = rank_hinge_loss(d_pos, d_neg, weight, self.cfg.margin, mask)
        with torch.no_grad():
            violated = ((d_neg < d_pos.unsqueeze(1)) & mask).any(1).to(m.weight.dtype).mean()
        return {"loss": loss, "violated": violated}

    def candidates(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``u``, candidates ``v`` (the true ancestor first, then the negatives: ``local_negatives``
        from the ancestor's descendants, the rest from all nodes) and the mask of those that count."""
        e = self.pairs[batch]
        u = e[:, 0].contiguous()
        neg = torch.randint(self.h.n_nodes, (len(u), self.cfg.negatives))
        k = self.cfg.local_negatives
        if k:  # uniform among the descendants of the positive ancestor (every ancestor has one: u)
            a = e[:, 1].numpy()
            lo, n_desc = self.desc_indptr[a], self.n_desc[a]
            pick = (torch.rand(len(a), k, dtype=torch.float64).numpy() * n_desc[:, None]).astype(np.int64)
            neg[:, :k] = torch.from_numpy(self.desc_indices[lo[:, None] + np.minimum(pick, n_desc[:, None] - 1)])
        v = torch.cat([e[:, 1:2], neg], dim=1)
        return u, v, negative_mask(u, v, self.indptr, self.indices)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.cfg.loss == "warp":
            return self.warp_loss(unwrap(model), batch)
        return model(*self.candidates(batch))

    def state_dict(self) -> dict[str, Any]:
        if self.pool is None:
            return {}
        return {"pool": self.pool, "pair_ranks": self.pair_ranks, "mined_epoch": self.mined_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "pool" in state:
            self.pool, self.pair_ranks, self.mined_epoch = state["pool"], state["pair_ranks"], int(state["mined_epoch"])

    def param_groups(self, model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
        group: dict[str, Any] = {"params": [model.weight], "weight_decay": 0.0}
        if cfg.optimizer in ("rsgd", "radam"):
            group.update(manifold=self.cfg.model, c=self.cfg.c)
        return [group]

    def after_step(self, model: nn.Module) -> None:
        model.project_()  # type: ignore[operator]  (Poincaré + Adam: back inside the ball)

    def evaluate(self, model: nn.Module, full: bool = False) -> dict[str, float]:
        m: HierarchyEmbedding = model  # type: ignore[assignment]
        nodes = None if full else self.eval_sample
        out = reconstruction(m.points(), self.all_ancestors, m.geometry, nodes=nodes)
        res = {"map": out["map"], "mean_rank": out["mean_rank"]}
        if len(self.test_edges):
            lp = link_prediction(m.points(), self.all_ancestors, self.test_edges, m.geometry)
            res.update({f"lp_{k}": v for k, v in lp.items() if k != "n_edges"})
        return res


def save_embeddings(run_dir: Path, task: HierarchyTask) -> None:
    """``embeddings.npy`` (the table's dtype: a float64 run's deep levels do not survive float32) +
    ``names.txt`` (one per row) + ``embedding.json`` (geometry, c)."""
    m = task.model
    save_npy(run_dir / "embeddings.npy", m.points().numpy())
    atomic_write_text(run_dir / "names.txt", "".join(n + "\n" for n in task.h.names))
    atomic_write_json(
        run_dir / "embedding.json",
        {"geometry": m.model, "c": m.c, "dim": int(m.weight.shape[1]), "n": task.h.n_nodes,
         "coordinates": {"lorentz": "space components (x_0 = sqrt(1/c + |x|^2))", "poincare": "ball",
                         "euclidean": "cartesian"}[m.model]},
    )


def train_hierarchy(cfg: HierarchyConfig, train: TrainConfig, hierarchy: Hierarchy | None = None) -> dict[str, Any]:
    """Train, save embeddings, run the full evaluation; returns the evaluation dict (also ``eval.json``)."""
    import os

    from hypalign.losses import hierarchy as hierarchy_loss

    h = hierarchy if hierarchy is not None else load_source(cfg.source, cfg.drop_invalid)
    # the numba kernels do the parallel work on their own threads; torch's few small ops per step
    # run fastest single-threaded (its OpenMP pool only contends with them)
    hierarchy_loss.THREADS = train.threads or os.cpu_count() or 1
    train.threads = 1
    # the fused kernels are CPU code (numba); a GPU would only hold the embedding table
    if train.device == "auto":
        train.device = "cpu"
    elif resolve_device(train.device).type != "cpu":
        raise InputError(f"device {train.device!r}: hierarchy embedding trains on the CPU (fused numba kernels)")
    if train.optimizer not in ("sparse_adam", "rsgd", "radam"):
        raise InputError(f"optimizer {train.optimizer!r}: hierarchy embedding updates only the rows a batch "
                         "touches (sparse gradients); use sparse_adam, rsgd or radam")
    task = HierarchyTask(h, cfg, seed=train.seed)
    extra = {"recipe": "hierarchy", "hierarchy": asdict(cfg), "nodes": h.n_nodes, "closure_pairs": len(task.pairs)}
    run_dir = Path(train.run_dir)
    if train.epochs == 0:  # the initial placement alone (e.g. the combinatorial construction)
        if cfg.init == "random":
            raise InputError("epochs 0 keeps the initial placement: use it with --init combinatorial or hierarchy")
        if train.resume:
            raise InputError("epochs 0 has nothing to resume")
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {"train": asdict(train), **extra})
        seconds, epochs, steps = 0.0, 0, 0
    else:
        result = Trainer(task, train, extra_config=extra).fit()
        seconds, epochs, steps = result.seconds, result.epoch, result.step
    save_embeddings(run_dir, task)
    final = task.evaluate(task.model, full=True)
    out = {"source": cfg.source, "model": cfg.model, "dim": cfg.dim, "nodes": h.n_nodes,
           "closure_pairs": int(sum(len(a) for a in task.all_ancestors)),
           "init": f"run:{cfg.init_from}" if cfg.init_from else cfg.init,
           "init_seconds": task.init_seconds, "train_seconds": seconds, "epochs": epochs, "steps": steps,
           "loss": cfg.loss, **({"mine_seconds": task.mine_seconds} if cfg.loss == "warp" else {}), **final}
    atomic_write_json(run_dir / "eval.json", out)
    return out


def _embeddings_of_run(run_dir: str, h: Hierarchy, cfg: HierarchyConfig) -> np.ndarray:
    """A finished run's embeddings as the start of this one: same nodes in the same order, same geometry."""
    emb, names, meta = load_run(run_dir)
    if names != h.names:
        raise InputError(f"init from {run_dir}: its names.txt ({len(names)} nodes) is not this hierarchy "
                         f"({h.n_nodes} nodes, source {cfg.source}): train on the same source")
    if meta.get("geometry") != cfg.model or abs(float(meta.get("c", 1.0)) - cfg.c) > 1e-12:
        raise InputError(f"init from {run_dir}: it is {meta.get('geometry')} with c={meta.get('c')}, this run "
                         f"{cfg.model} with c={cfg.c}")
    if emb.shape[1] != cfg.dim:
        raise InputError(f"init from {run_dir}: dimension {emb.shape[1]}, this run {cfg.dim}")
    if not np.isfinite(emb).all():
        raise InputError(f"init from {run_dir}: embeddings.npy holds non-finite values")
    return emb.astype(np.float64 if cfg.dtype == "float64" else np.float32)


def load_run(run_dir: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Embeddings, node names and ``embedding.json`` of a finished hierarchy run."""
    run_dir = Path(run_dir)
    for f in ("embeddings.npy", "names.txt", "embedding.json"):
        if not (run_dir / f).is_file():
            raise InputError(f"{run_dir}: missing {f} (is this a finished `hypalign hierarchy embed` run?)")
    emb = np.load(run_dir / "embeddings.npy", allow_pickle=False)
    names = (run_dir / "names.txt").read_text(encoding="utf-8").splitlines()
    meta = json.loads((run_dir / "embedding.json").read_text())
    if len(names) != len(emb):
        raise InputError(f"{run_dir}: names.txt has {len(names)} lines for {len(emb)} embeddings")
    return emb, names, meta
