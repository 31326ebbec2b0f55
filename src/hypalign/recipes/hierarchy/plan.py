"""The hierarchy recipe's default plan (``--plan auto``): how a hierarchy nobody tuned for is embedded.

Chosen from the hierarchy itself, in stages (each a run of the shared trainer in ``RUN/stages/NAME``; the chosen
embedding, ``eval.json`` and ``plan.json`` land in ``RUN``):

1. ``construct`` — :func:`~hypalign.models.hierarchy.combinatorial_construction` in float64 (hyperbolic models,
   ``dim >= 2``), scored by the full reconstruction. Exact (MAP >= ``EXACT_MAP``: bushy trees whose depth fits the
   float64 radius budget): kept as it is, nothing trained (training can only make it worse). The same holds after
   every later stage: the first exact one ends the plan.
2. Otherwise up to two more candidates (``fit`` and ``refine`` are skipped when ``polish`` reaches MAP >=
   ``GOOD_MAP``: from there a fit from a random start costs several times more for a few % of mean rank at most);
   of all the stages run (the construction included) the one with the lowest mean
   rank (full reconstruction; MAP breaks ties) is kept:

   * ``polish`` — ``refine`` (below) from the construction: what a nearly right placement needs (trees in two
     dimensions, trees a little too deep for the radius budget) — a small step from a good start;
   * ``fit`` then ``refine`` from it — what deep trees and chains, and DAGs whose second parents the construction
     cannot honour, need: the papers' objective (softmax over 10 negatives drawn as gensim does, from the
     closure's unigram dampened to the power 0.75) from a random start near the
     origin with Riemannian SGD (lr 3, cosine decay, 5 burn-in epochs at lr/10), batches of 32 closure pairs,
     50 epochs.

   ``refine`` is the rank-weighted margin loss on mined nearest non-ancestors (``loss="warp"``: 16 negatives from a
   pool of 64, batches of 64) with Riemannian Adam (lr 0.03, cosine), 30 epochs.

The Euclidean baseline (and ``dim == 1``) has no construction: ``fit`` then ``refine``.

Within a trained stage the state kept is the best one by the recipe's own sampled reconstruction MAP (evaluated every
``EVAL_EVERY`` epochs; the stage's ``best`` checkpoint), never simply the last. Cost: the stages make 110 passes over
the closure (about 20 us per pair and pass on 2 cores, where gensim's PoincareModel takes about 60 us per pair and
epoch for its 50-300 epochs), so time grows with the closure, not with tuning.

A value given for one of the options the plan chooses (``init``, ``loss``, ``init_from``, and the trainer's
``epochs``, ``lr``, ``optimizer``, ``schedule``, ``burnin_epochs``) means the user chooses the training: that single
run is made exactly as given (``--plan manual`` does so always). The plan's precision (float64) applies whenever
``--dtype`` is left at its default.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.data.hierarchy import Hierarchy
from hypalign.io import atomic_write_json

#: a construction this good (full-reconstruction MAP) is kept as it is
EXACT_MAP = 0.999
#: a polish this good ends the plan too: a fit from a random start would cost several times more for a few % of
#: mean rank at most (GO hydrolase activity: MAP 0.971 / mean rank 1.53 polished, 0.914 / 1.46 fitted and refined)
GOOD_MAP = 0.95
#: epochs between the sampled evaluations that pick the kept state
EVAL_EVERY = 5
#: trainer options the plan chooses (a value other than the recipe's default means the user chooses)
PLANNED_TRAIN = ("epochs", "lr", "optimizer", "schedule", "burnin_epochs")
#: recipe options the plan chooses in the same sense
PLANNED_RECIPE = ("init", "loss", "init_from")


@dataclass
class HierarchyStats:
    """What the plan reads: nodes, closure pairs, depth (longest root-to-leaf path in edges), largest number of
    children, fraction of nodes with more than one parent, roots."""

    nodes: int
    pairs: int
    depth: int
    max_children: int
    multi_parent: float
    roots: int


def hierarchy_stats(h: Hierarchy) -> HierarchyStats:
    parents = h.parents()
    level = np.zeros(h.n_nodes, dtype=np.int64)
    for v in h.topological_order():
        if parents[v]:
            level[v] = 1 + max(level[p] for p in parents[v])
    n_children = np.bincount(h.edges[:, 1], minlength=h.n_nodes) if len(h.edges) else np.zeros(1, dtype=np.int64)
    return HierarchyStats(
        nodes=h.n_nodes, pairs=int(sum(len(a) for a in h.ancestors())), depth=int(level.max(initial=0)),
        max_children=int(n_children.max(initial=0)), multi_parent=float(np.mean([len(p) > 1 for p in parents])),
        roots=int(sum(1 for p in parents if not p)))


def user_chose_training(cfg: Any, train: Any, train_defaults: dict[str, Any]) -> list[str]:
    """The planned options given values other than their defaults (the user's own training), as flags."""
    from hypalign.train import TrainConfig

    rdefaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    tdefaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)} | dict(train_defaults)
    chosen = [n for n in PLANNED_RECIPE if getattr(cfg, n) != rdefaults[n]]
    chosen += [n for n in PLANNED_TRAIN if getattr(train, n) != tdefaults[n]]
    return ["--" + n.replace("_", "-") for n in chosen]


def stage(name: str, cfg: Any, train: Any) -> tuple[Any, Any]:
    """The recipe and trainer configs of stage ``name`` (``construct``, ``polish``, ``fit`` or ``refine``; module
    docstring; ``polish`` and ``refine`` still need ``init_from``)."""
    base = replace(cfg, plan="manual", dtype="float64" if cfg.dtype == "float32" else cfg.dtype)
    common = {"eval_every": EVAL_EVERY, "best_metric": "map", "best_mode": "max", "warmup_steps": 0}
    if name == "construct":
        return replace(base, init="combinatorial"), replace(train, epochs=0)
    if name == "fit":
        return (replace(base, init="random", loss="nll", negatives=10, local_negatives=0, batch_size=32,
                        negative_power=0.75),
                replace(train, epochs=50, lr=3.0, optimizer="rsgd", schedule="cosine", burnin_epochs=5, **common))
    if name in ("refine", "polish"):
        return (replace(base, init="random", loss="warp", negatives=16, hard_pool=64, batch_size=64),
                replace(train, epochs=30, lr=0.03, optimizer="radam", schedule="cosine", burnin_epochs=0, **common))
    raise ValueError(f"unknown stage {name!r}")


def train_planned(cfg: Any, train: Any, h: Hierarchy, single: Callable[..., dict[str, Any]],
                  say: Callable[[str], None]) -> dict[str, Any]:
    """Run the plan (module docstring) with ``single(cfg, train, h)``, the recipe's one-run trainer; returns the
    chosen stage's results with ``plan`` (the stages run) added, as ``RUN/eval.json``."""
    run_dir = Path(train.run_dir)
    stats = hierarchy_stats(h)
    todo = ["construct"] if cfg.model != "euclidean" and cfg.dim >= 2 else ["fit", "refine"]
    say(f"plan auto: {stats.nodes} nodes, {stats.pairs} closure pairs, depth {stats.depth}, "
        f"{stats.multi_parent:.0%} with several parents")
    results: dict[str, dict[str, Any]] = {}
    planned: dict[str, tuple[Any, Any]] = {}
    while todo:
        name = todo.pop(0)
        scfg, strain = stage(name, cfg, train)
        sdir = run_dir / "stages" / name
        if name in ("refine", "polish"):
            scfg = replace(scfg, init_from=str(run_dir / "stages" / ("fit" if name == "refine" else "construct")))
        strain = replace(strain, run_dir=str(sdir), resume=train.resume and (sdir / "config.json").is_file())
        planned[name] = (scfg, strain)
        done = sdir / "eval.json"
        if train.resume and done.is_file():  # a finished stage of a resumed plan
            results[name] = json.loads(done.read_text())
        else:
            if sdir.exists() and not strain.resume:
                shutil.rmtree(sdir)
            results[name] = single(scfg, strain, h)
        r = results[name]
        say(f"stage {name}: MAP {r['map']:.4f}, mean rank {r['mean_rank']:.3f}")
        if r["map"] >= EXACT_MAP or (name == "polish" and r["map"] >= GOOD_MAP):  # exact, or as good as it pays
            break
        if name == "construct":
            todo = ["polish", "fit", "refine"]
    chosen = min(results, key=lambda n: (results[n]["mean_rank"], -results[n]["map"]))
    for f in ("embeddings.npy", "names.txt", "embedding.json"):
        tmp = run_dir / f".{f}.tmp"
        shutil.copyfile(run_dir / "stages" / chosen / f, tmp)
        tmp.replace(run_dir / f)
    plan = {"stats": asdict(stats), "stages": {n: {"hierarchy": asdict(c), "train": {k: getattr(t, k) for k in (
        "epochs", "lr", "optimizer", "schedule", "burnin_epochs")}} for n, (c, t) in planned.items()},
        "chosen": chosen}
    atomic_write_json(run_dir / "plan.json", plan)
    atomic_write_json(run_dir / "config.json", {"recipe": "hierarchy", "hierarchy": asdict(cfg),
                                                "train": asdict(train), "plan": plan})
    out = {**results[chosen], "plan": chosen, "stages": {n: {"map": r["map"], "mean_rank": r["mean_rank"]}
                                                         for n, r in results.items()},
           "init_seconds": sum(r["init_seconds"] for r in results.values()),
           "train_seconds": sum(r["train_seconds"] for r in results.values())}
    atomic_write_json(run_dir / "eval.json", out)
    return out
