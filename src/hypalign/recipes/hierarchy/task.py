"""Hierarchy embedding recipe (Nickel & Kiela 2017 Poincaré embeddings; 2018 Lorentz model).

Trains :class:`hypalign.models.hierarchy.HierarchyEmbedding` on the transitive closure of a
hierarchy with the shared :class:`hypalign.train.Trainer`:

* every closure pair ``(u, v)`` (``v`` an ancestor of ``u``) is a positive, with ``negatives``
  drawn nodes that are neither ``u`` nor ancestors of ``u`` (uniformly, or with ``negative_power = a``
  with probability ``~ (deg + 1)^a``, ``deg`` the closure pairs a node is in: gensim's dampened unigram at
  ``a = 0.75``, which draws the general nodes every ranking competes with far more often; drawn again each time;
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign.data.hierarchy import Hierarchy
from hypalign.data.hierarchy_sources import closure_csr, load_source, split_link_prediction
from hypalign.errors import InputError
from hypalign.eval.hierarchy import link_prediction, reconstruction
from hypalign.io import atomic_write_json
from hypalign.losses.hierarchy import rank_hinge_loss
from hypalign.models.hierarchy import (
    HIERARCHY_MODELS,
    HierarchyEmbedding,
    combinatorial_construction,
    hierarchy_init,
)
from hypalign.objectives.miners import mine_nearest_non_ancestors, negative_mask
from hypalign.options import REQUIRED, check_options, opt
from hypalign.recipes.hierarchy.runfiles import embeddings_of_run, save_embeddings
from hypalign.train import Task, TrainConfig, Trainer, resolve_device
from hypalign.train.checkpoint import unwrap

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class HierarchyConfig:
    source: str = opt(REQUIRED, "wordnet:nouns, wordnet:<synset> (e.g. wordnet:mammal.n.01), go:BP|MF|CC[:<GO id>], "
                      "or file:<edges.tsv> (child,parent per line).")
    plan: str = opt("auto", "auto: construction, precision and training chosen from the hierarchy itself (exact "
                    "construction kept; otherwise Riemannian SGD from a random start, then a mean-rank refinement; the "
                    "best sampled state kept; see docs/hierarchy.md); giving --init, --loss, --init-from, --epochs, "
                    "--lr, --optimizer, --schedule or --burnin makes it one run as given. manual: one run exactly as "
                    "given.", choices=("auto", "manual"))
    dim: int = opt(10, "Embedding dimension.", min=1)
    model: str = opt("lorentz", "Geometry of the embedding.", choices=HIERARCHY_MODELS)
    c: float = opt(1.0, "Curvature magnitude (curvature -c).", min=1e-6)
    negatives: int = opt(50, "Negatives per positive pair.", min=1)
    batch_size: int = opt(512, "Closure pairs per step.", min=1)
    link_prediction: float = opt(0.0, "Hold out this fraction of transitive-reduction edges and report link "
                                 "prediction.", min=0.0, max=0.5)
    eval_nodes: int = opt(2000, "Nodes sampled for evaluations during training (0 = all); the final one uses all.",
                          min=0)
    drop_invalid: bool = opt(False, "file: sources: drop bad lines (counted) instead of failing.")
    init_scale: float = opt(1e-3, "init random: uniform half-width near the origin.", min=0.0)
    init: str = opt("random", "random: uniform near the origin (the papers); hierarchy: each node near its parent's "
                    "direction, one step further out; combinatorial: nested shadow cones, trees nearly exact before "
                    "training (see docs/hierarchy.md).", choices=("random", "hierarchy", "combinatorial"))
    init_spread: float = opt(1.5, "init hierarchy: direction noise below the roots.", min=0.0)
    init_step: float = opt(1.0, "init hierarchy: geodesic radius added per level.", min=0.0)
    init_decay: float = opt(0.5, "init hierarchy: noise factor per level.", min=0.0, max=1.0)
    init_margin: float = opt(0.3, "init combinatorial: geodesic margin added to each level's radial step.", min=0.0)
    init_cap: float = opt(1.4, "init combinatorial: children's cone as a fraction of the parent's shadow (2 = all).",
                          min=0.0, max=2.0)
    negative_power: float = opt(0.0, "loss nll: negatives drawn with probability proportional to (closure pairs the "
                                "node is in + 1)^power; 0 = uniform, 0.75 = gensim's dampened unigram.", min=0.0)
    local_negatives: int = opt(0, "Of the negatives, this many drawn from the descendants of the positive ancestor "
                               "(siblings and cousins) instead of all nodes.", min=0)
    dtype: str = opt("float32", "Embedding table precision; float64 for deep hierarchies (WordNet nouns): float32 "
                     "Poincaré points stop at radius ~12.", choices=tuple(DTYPES))
    loss: str = opt("nll", "nll: the papers' softmax over the negatives; warp: rank-weighted margin loss on each "
                    "node's mined nearest non-ancestors (a mean-rank refinement of a trained run).",
                    choices=("nll", "warp"))
    margin: float = opt(0.1, "loss warp: margin of the hinge.", min=0.0)
    hard_pool: int = opt(32, "loss warp: nearest non-ancestors kept per node; the negatives are drawn from them.",
                         min=1)
    mine_every: int = opt(1, "loss warp: epochs between minings of the pool (each also computes every pair's exact "
                          "rank).", min=1)
    init_from: str = opt("", "Start from a finished run of the same source and geometry (its embeddings.npy), e.g. "
                         "to refine it with --loss warp.")

    def __post_init__(self) -> None:
        check_options(self)


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
        self.indptr, self.indices = closure_csr(self.train_ancestors)
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
        # negative_power > 0: the dampened unigram of the closure (word2vec / gensim PoincareModel); None = uniform
        self.neg_weights = None if not cfg.negative_power else torch.from_numpy(
            (np.bincount(self.pairs.reshape(-1).numpy(), minlength=hierarchy.n_nodes) + 1.0) ** cfg.negative_power)
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
                self.model.weight.copy_(torch.from_numpy(embeddings_of_run(cfg.init_from, hierarchy, cfg)))
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
        neg = torch.randint(self.h.n_nodes, (len(u), self.cfg.negatives)) if self.neg_weights is None else \
            torch.multinomial(self.neg_weights, len(u) * self.cfg.negatives, replacement=True).view(len(u), -1)
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


def train_hierarchy(cfg: HierarchyConfig, train: TrainConfig, hierarchy: Hierarchy | None = None,
                    say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, save embeddings, run the full evaluation; returns the evaluation dict (also ``eval.json``).

    ``cfg.plan == "auto"`` (the default) runs :mod:`hypalign.recipes.hierarchy.plan` unless the training options were
    given (then one run exactly as given, as ``"manual"`` always does)."""
    from hypalign.recipes.hierarchy import plan as planning

    h = hierarchy if hierarchy is not None else load_source(cfg.source, cfg.drop_invalid)
    say = say or (lambda m: None)
    if cfg.plan == "auto":
        given = planning.user_chose_training(cfg, train, _train_defaults())
        if not given:
            return planning.train_planned(cfg, train, h, _train_single, say)
        say(f"plan auto: {', '.join(given)} given, so one run as given")
        cfg = replace(cfg, plan="manual")
    return _train_single(cfg, train, h)


def _train_defaults() -> dict[str, Any]:
    from hypalign.recipes.hierarchy import RECIPE

    return dict(RECIPE.train_defaults)


def _train_single(cfg: HierarchyConfig, train: TrainConfig, h: Hierarchy) -> dict[str, Any]:
    """One run of the trainer (the state kept: the best by ``train.best_metric`` when that was evaluated)."""
    import os

    from hypalign.losses import hierarchy as hierarchy_loss

    # the numba kernels do the parallel work on their own threads; torch's few small ops per step
    # run fastest single-threaded (its OpenMP pool only contends with them). The caller's config stays as given.
    hierarchy_loss.THREADS = train.threads or os.cpu_count() or 1
    changes: dict[str, Any] = {"threads": 1}
    # the fused kernels are CPU code (numba); a GPU would only hold the embedding table
    if train.device == "auto":
        changes["device"] = "cpu"
    elif resolve_device(train.device).type != "cpu":
        raise InputError(f"device {train.device!r}: hierarchy embedding trains on the CPU (fused numba kernels)")
    if train.optimizer == "adam":  # Adam on an embedding table is the lazy (sparse) one
        changes["optimizer"] = "sparse_adam"
    elif train.optimizer not in ("sparse_adam", "rsgd", "radam"):
        raise InputError(f"optimizer {train.optimizer!r}: hierarchy embedding updates only the rows a batch "
                         "touches (sparse gradients); use adam (= sparse_adam), rsgd or radam")
    train = replace(train, **changes)
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
        _keep_best(task, train, run_dir)
    save_embeddings(run_dir, task)
    final = task.evaluate(task.model, full=True)
    out = {"source": cfg.source, "model": cfg.model, "dim": cfg.dim, "nodes": h.n_nodes,
           "closure_pairs": int(sum(len(a) for a in task.all_ancestors)),
           "init": f"run:{cfg.init_from}" if cfg.init_from else cfg.init,
           "init_seconds": task.init_seconds, "train_seconds": seconds, "epochs": epochs, "steps": steps,
           "loss": cfg.loss, **({"mine_seconds": task.mine_seconds} if cfg.loss == "warp" else {}), **final}
    atomic_write_json(run_dir / "eval.json", out)
    return out


def _keep_best(task: HierarchyTask, train: TrainConfig, run_dir: Path) -> None:
    """Back to the ``best`` checkpoint when the last state scores worse on ``train.best_metric`` (sampled)."""
    from hypalign.train.checkpoint import find_checkpoint, load_checkpoint

    best = find_checkpoint(run_dir, "best")
    if not train.best_metric or best is None:
        return
    value = json.loads((best / "checkpoint.json").read_text()).get("best_value")
    now = task.evaluate(task.model).get(train.best_metric)
    if value is not None and now is not None and (now < value if train.best_mode == "max" else now > value):
        load_checkpoint(best, task.model)
