"""What ``hypalign eval|embed RUN`` do with a hierarchy run, and its model loader (the registry's entry points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign.errors import InputError
from hypalign.runs import Run


def load_model(run_dir: Path, which: str = "model") -> Any:
    """The run's embedding table as a :class:`~hypalign.models.hierarchy.HierarchyEmbedding` (``model``: the final
    ``embeddings.npy``; ``latest`` / ``best``: a checkpoint)."""
    from hypalign.models.hierarchy import HierarchyEmbedding
    from hypalign.recipes.hierarchy.runfiles import load_run
    from hypalign.runs import read_run_config
    from hypalign.train.checkpoint import find_checkpoint, load_checkpoint

    cfg = read_run_config(run_dir, "hierarchy")
    h = cfg["hierarchy"]
    if which == "model":
        emb, _, meta = load_run(run_dir)
        m = HierarchyEmbedding(len(emb), emb.shape[1], meta["geometry"], float(meta["c"]),
                               dtype=torch.from_numpy(emb[:1]).dtype)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(emb))
        return m
    ck = find_checkpoint(run_dir, which)
    if ck is None:
        raise InputError(f"{run_dir}: no {which} checkpoint")
    n = int(cfg.get("nodes", 0))
    m = HierarchyEmbedding(n, h["dim"], h["model"], h["c"], dtype=torch.float64 if h.get("dtype") == "float64"
                           else torch.float32)
    load_checkpoint(ck, m)
    return m


def evaluate(run: Run, plot: Path | None = None, which: str | None = None, **_: Any) -> dict[str, Any]:
    """Reconstruction mean rank and MAP over every node (and link prediction when the run held edges out); with
    ``plot``, the embedding drawn in the Poincaré disk."""
    from hypalign.data.hierarchy_sources import load_source, split_link_prediction
    from hypalign.eval.hierarchy import link_prediction, reconstruction
    from hypalign.recipes.hierarchy.runfiles import load_run

    _, names, meta = load_run(run.path)
    hcfg = run.recipe_config
    h = load_source(hcfg["source"], hcfg.get("drop_invalid", False))
    if h.names != names:
        raise InputError(f"{run.path}: names.txt does not match {hcfg['source']} (the source changed since training?)")
    m = load_model(run.path, which or "model")
    x, geom = m.points(), m.geometry
    anc = h.ancestors()
    out: dict[str, Any] = {"source": hcfg["source"], "model": meta["geometry"], "dim": meta["dim"], "nodes": h.n_nodes}
    out.update(reconstruction(x, anc, geom))
    if hcfg.get("link_prediction", 0) > 0:
        _, test = split_link_prediction(h, hcfg["link_prediction"], run.train_config["seed"], anc)
        out.update({f"lp_{k}": v for k, v in link_prediction(x, anc, test, geom).items()})
    if plot is not None:
        plot_run(run.path, plot)
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in out.items()}


def plot_run(run_dir: Path, out: Path, method: str = "umap", label_top: int = 25, max_points: int = 3000) -> None:
    """Draw the run's embedding in the Poincaré disk (nodes nearest the origin first), top levels labelled."""
    from hypalign.data.hierarchy_sources import load_source
    from hypalign.geometry import get_geometry
    from hypalign.recipes.hierarchy.runfiles import load_run
    from hypalign.runs import read_run_config
    from hypalign.viz.disk import plot_disk, to_disk

    emb, names, meta = load_run(run_dir)
    geom = get_geometry(meta["geometry"], c=meta["c"])
    keep = np.arange(len(emb))
    if len(emb) > max_points:
        r = geom.dist(torch.zeros(1, emb.shape[1], dtype=torch.float64), torch.from_numpy(emb).double()).numpy()
        keep = np.sort(np.argsort(r)[:max_points])
    pts = to_disk(emb[keep], meta["geometry"], meta["c"], method=method)
    edges = None
    if (run_dir / "config.json").exists():
        h = load_source(read_run_config(run_dir, "hierarchy")["hierarchy"]["source"])
        if h.names == names:
            remap = -np.ones(len(emb), dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            e = remap[h.edges]
            edges = e[(e >= 0).all(1)]
    label = [names[i].split(".")[0] for i in keep]
    plot_disk(pts, out, names=label, edges=edges, label_top=label_top,
              title=f"{run_dir.name}: {meta['geometry']} dim {meta['dim']} ({method})")


def embed(run: Run, inputs: list[str], out: Path, say: Any = print, **_: Any) -> dict[str, Any]:
    """The embeddings of the named nodes (names, or files of names one per line) in the run's table order of the
    inputs; an unknown name is a one-line error."""
    from hypalign.io import atomic_write_text, save_npy
    from hypalign.recipes.hierarchy.runfiles import load_run

    emb, names, meta = load_run(run.path)
    index = {n: i for i, n in enumerate(names)}
    wanted: list[str] = []
    for item in inputs:
        p = Path(item)
        if item not in index and p.is_file():
            for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
                name = line.strip()
                if name and name not in index:
                    raise InputError(f"{p}: line {lineno}: node {name!r} is not in the run's hierarchy")
                if name:
                    wanted.append(name)
        elif item in index:
            wanted.append(item)
        else:
            raise InputError(f"node {item!r} is not in the run's hierarchy ({len(names)} nodes, see its names.txt)")
    rows = emb[[index[n] for n in wanted]]
    save_npy(out, rows)
    atomic_write_text(Path(out).with_suffix(".txt"), "".join(f"{n}\n" for n in wanted))
    return {"n": len(wanted), "dim": int(emb.shape[1]), "geometry": meta["geometry"], "c": meta["c"]}
