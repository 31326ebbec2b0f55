"""``hypalign hierarchy embed|eval|plot``: WordNet / Gene Ontology / edge-list hierarchies in hyperbolic space."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, print_metrics, user_errors

hierarchy_app = typer.Typer(
    help="Embed a hierarchy (WordNet, Gene Ontology, your edge list) and evaluate or draw it.", no_args_is_help=True
)


class ModelChoice(StrEnum):
    lorentz = "lorentz"
    poincare = "poincare"
    euclidean = "euclidean"


class OptimizerChoice(StrEnum):
    adam = "adam"
    rsgd = "rsgd"
    radam = "radam"


class DtypeChoice(StrEnum):
    float32 = "float32"
    float64 = "float64"


class ScheduleChoice(StrEnum):
    constant = "constant"
    cosine = "cosine"


class InitChoice(StrEnum):
    random = "random"
    hierarchy = "hierarchy"
    combinatorial = "combinatorial"


class LossChoice(StrEnum):
    nll = "nll"
    warp = "warp"


class MethodChoice(StrEnum):
    umap = "umap"
    tangent_pca = "tangent-pca"


@hierarchy_app.command("embed")
@user_errors
def embed(
    source: Annotated[str, typer.Argument(help="wordnet:nouns, wordnet:<synset> (e.g. wordnet:mammal.n.01), "
                                          "go:BP|MF|CC, or file:<edges.tsv> (child,parent per line).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Run directory (runs/NAME).")],
    dim: Annotated[int, typer.Option(help="Embedding dimension.", min=1)] = 10,
    model: Annotated[ModelChoice, typer.Option(help="Geometry of the embedding.")] = ModelChoice.lorentz,
    c: Annotated[float, typer.Option(help="Curvature magnitude (curvature -c).", min=1e-6)] = 1.0,
    epochs: Annotated[int, typer.Option(help="Passes over the closure (0: keep the initial placement, e.g. "
                                        "--init combinatorial alone).", min=0)] = 150,
    lr: Annotated[float, typer.Option(help="Learning rate (after burn-in).")] = 1.0,
    optimizer: Annotated[
        OptimizerChoice, typer.Option(help="adam on the model's coordinates, rsgd (Riemannian SGD, as the papers) "
                                      "or radam (Riemannian Adam: geodesic steps of about lr).")
    ] = OptimizerChoice.adam,
    schedule: Annotated[ScheduleChoice, typer.Option(help="Learning rate after burn-in: constant, or cosine "
                                                     "decay to 0 at the last epoch.")] = ScheduleChoice.constant,
    dtype: Annotated[DtypeChoice, typer.Option(help="Embedding table precision; float64 for deep hierarchies "
                                               "(WordNet nouns): float32 Poincaré points stop at radius ~12.")
                     ] = DtypeChoice.float32,
    batch_size: Annotated[int, typer.Option(help="Closure pairs per step.", min=1)] = 512,
    negatives: Annotated[int, typer.Option(help="Negatives per positive pair.", min=1)] = 50,
    local_negatives: Annotated[int, typer.Option(help="Of the negatives, this many drawn from the descendants of "
                                                 "the positive ancestor (siblings and cousins) instead of all "
                                                 "nodes.", min=0)] = 0,
    burnin: Annotated[int, typer.Option(help="Burn-in epochs at lr/10.", min=0)] = 10,
    init: Annotated[InitChoice, typer.Option(help="random: uniform near the origin (the papers); hierarchy: each "
                                             "node near its parent's direction, one step further out; "
                                             "combinatorial: nested shadow cones, trees nearly exact before "
                                             "training (see docs/hierarchy.md).")] = InitChoice.random,
    init_spread: Annotated[float, typer.Option(help="--init hierarchy: direction noise below the roots.",
                                               min=0.0)] = 1.5,
    init_step: Annotated[float, typer.Option(help="--init hierarchy: geodesic radius added per level.",
                                             min=0.0)] = 1.0,
    init_decay: Annotated[float, typer.Option(help="--init hierarchy: noise factor per level.", min=0.0,
                                              max=1.0)] = 0.5,
    init_margin: Annotated[float, typer.Option(help="--init combinatorial: geodesic margin added to each level's "
                                                "radial step.", min=0.0)] = 0.3,
    init_cap: Annotated[float, typer.Option(help="--init combinatorial: children's cone as a fraction of the parent's "
                                             "shadow (2 = all of it).", min=0.0, max=2.0)] = 1.4,
    init_from: Annotated[Path | None, typer.Option(help="Start from a finished run of the same source and geometry "
                                                   "(its embeddings.npy), e.g. to refine it with --loss warp.")
                         ] = None,
    loss: Annotated[LossChoice, typer.Option(help="nll: the papers' softmax over the negatives; warp: rank-weighted "
                                             "margin loss on each node's mined nearest non-ancestors (a mean-rank "
                                             "refinement of a trained run, see docs/hierarchy.md).")
                    ] = LossChoice.nll,
    margin: Annotated[float, typer.Option(help="--loss warp: margin of the hinge.", min=0.0)] = 0.1,
    hard_pool: Annotated[int, typer.Option(help="--loss warp: nearest non-ancestors kept per node; --negatives "
                                           "are drawn from them.", min=1)] = 32,
    mine_every: Annotated[int, typer.Option(help="--loss warp: epochs between minings of the pool (each also "
                                            "computes every pair's exact rank).", min=1)] = 1,
    link_prediction: Annotated[float, typer.Option(help="Hold out this fraction of transitive-reduction "
                                                        "edges and report link prediction.", min=0.0, max=0.5)] = 0.0,
    eval_every: Annotated[int, typer.Option(help="Evaluate (on a node sample) every N epochs; 0 = at the end.")] = 0,
    eval_nodes: Annotated[int, typer.Option(help="Nodes sampled for evaluations during training (0 = all).")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")] = False,
    drop_invalid: Annotated[
        bool, typer.Option(help="file: sources: drop bad lines (counted) instead of failing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final evaluation as JSON.")] = False,
) -> None:
    """Train hierarchy embeddings on the transitive closure (Nickel & Kiela 2017/2018)."""
    import os

    from hypalign.recipes.hierarchy import HierarchyConfig, train_hierarchy
    from hypalign.train import TrainConfig

    cfg = HierarchyConfig(source=source, dim=dim, model=model.value, c=c, negatives=negatives, batch_size=batch_size,
                          link_prediction=link_prediction, eval_nodes=eval_nodes, drop_invalid=drop_invalid,
                          init=init.value, init_spread=init_spread, init_step=init_step, init_decay=init_decay,
                          init_margin=init_margin, init_cap=init_cap,
                          local_negatives=local_negatives, dtype=dtype.value, loss=loss.value, margin=margin,
                          hard_pool=hard_pool, mine_every=mine_every, init_from=str(init_from) if init_from else "")
    train = TrainConfig(run_dir=str(out), epochs=epochs, lr=lr, schedule=schedule.value,
                        optimizer="sparse_adam" if optimizer.value == "adam" else optimizer.value,
                        burnin_epochs=burnin, eval_every=eval_every, seed=seed, resume=resume, log_every=20,
                        threads=threads or os.cpu_count() or 1, best_metric=None, save_interval_s=30.0)
    console.print(f"[bold]hierarchy[/] {source} -> {model.value} dim {dim}, {epochs} epochs, run dir {out}")
    result = train_hierarchy(cfg, train)
    print_metrics(result, as_json)


@hierarchy_app.command("eval")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hypalign hierarchy embed`.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Reconstruction mean rank and MAP of a trained run (and link prediction if it held edges out)."""
    import json

    import numpy as np
    import torch

    from hypalign.errors import InputError
    from hypalign.eval.hierarchy import link_prediction, reconstruction
    from hypalign.geometry import get_geometry
    from hypalign.recipes.hierarchy import load_run, load_source, split_link_prediction

    emb, names, meta = load_run(run)
    try:
        cfg = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{run / 'config.json'}: unreadable ({exc})") from None
    hcfg = cfg["hierarchy"]
    h = load_source(hcfg["source"], hcfg.get("drop_invalid", False))
    if h.names != names:
        raise InputError(f"{run}: names.txt does not match {hcfg['source']} (the source changed since training?)")
    geom = get_geometry(meta["geometry"], c=meta["c"])
    x = torch.from_numpy(emb)
    anc = h.ancestors()
    out = {"source": hcfg["source"], "model": meta["geometry"], "dim": meta["dim"], "nodes": h.n_nodes}
    out.update({k: v for k, v in reconstruction(x, anc, geom).items()})
    if hcfg.get("link_prediction", 0) > 0:
        _, test = split_link_prediction(h, hcfg["link_prediction"], cfg["train"]["seed"], anc)
        out.update({f"lp_{k}": v for k, v in link_prediction(x, anc, test, geom).items()})
    print_metrics({k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}, as_json)


@hierarchy_app.command("plot")
@user_errors
def plot(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hypalign hierarchy embed`.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Image file (.png, .pdf, .svg).")],
    method: Annotated[MethodChoice, typer.Option(help="Projection for dim > 2.")] = MethodChoice.umap,
    label_top: Annotated[int, typer.Option(help="Label this many nodes nearest the origin.")] = 25,
    max_points: Annotated[int, typer.Option(help="Draw at most this many nodes (those nearest the origin).")] = 3000,
) -> None:
    """Draw the run's embedding in the Poincaré disk with the top levels labelled."""
    import json

    import numpy as np
    import torch

    from hypalign.geometry import get_geometry
    from hypalign.recipes.hierarchy import load_run
    from hypalign.viz.disk import plot_disk, to_disk

    emb, names, meta = load_run(run)
    geom = get_geometry(meta["geometry"], c=meta["c"])
    keep = np.arange(len(emb))
    if len(emb) > max_points:
        r = geom.dist(torch.zeros(1, emb.shape[1], dtype=torch.float64), torch.from_numpy(emb).double()).numpy()
        keep = np.sort(np.argsort(r)[:max_points])
    pts = to_disk(emb[keep], meta["geometry"], meta["c"], method=method.value)
    edges = None
    cfg_path = run / "config.json"
    if cfg_path.exists():
        from hypalign.recipes.hierarchy import load_source

        h = load_source(json.loads(cfg_path.read_text())["hierarchy"]["source"])
        if h.names == names:
            remap = -np.ones(len(emb), dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            e = remap[h.edges]
            edges = e[(e >= 0).all(1)]
    label = [names[i].split(".")[0] for i in keep]
    plot_disk(pts, out, names=label, edges=edges, label_top=label_top,
              title=f"{run.name}: {meta['geometry']} dim {meta['dim']} ({method.value})")
    console.print(f"wrote {out}")

