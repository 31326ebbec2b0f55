"""The files of a finished hierarchy run: ``embeddings.npy`` (the table's dtype), ``names.txt`` (one node per row),
``embedding.json`` (geometry, c, dimension): written by :func:`save_embeddings`, read by :func:`load_run`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hypalign.data.hierarchy import Hierarchy
from hypalign.errors import InputError
from hypalign.io import atomic_write_json, atomic_write_text, save_npy


def save_embeddings(run_dir: Path, task: Any) -> None:
    """``embeddings.npy`` (the table's dtype: a float64 run's deep levels do not survive float32) +
    ``names.txt`` (one per row) + ``embedding.json`` (geometry, c) of a ``HierarchyTask``'s model."""
    m = task.model
    save_npy(run_dir / "embeddings.npy", m.points().numpy())
    atomic_write_text(run_dir / "names.txt", "".join(n + "\n" for n in task.h.names))
    atomic_write_json(
        run_dir / "embedding.json",
        {"geometry": m.model, "c": m.c, "dim": int(m.weight.shape[1]), "n": task.h.n_nodes,
         "coordinates": {"lorentz": "space components (x_0 = sqrt(1/c + |x|^2))", "poincare": "ball",
                         "euclidean": "cartesian"}[m.model]},
    )


def embeddings_of_run(run_dir: str, h: Hierarchy, cfg: Any) -> np.ndarray:
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
            raise InputError(f"{run_dir}: missing {f} (is this a finished `hypalign train hierarchy` run?)")
    emb = np.load(run_dir / "embeddings.npy", allow_pickle=False)
    names = (run_dir / "names.txt").read_text(encoding="utf-8").splitlines()
    meta = json.loads((run_dir / "embedding.json").read_text())
    if len(names) != len(emb):
        raise InputError(f"{run_dir}: names.txt has {len(names)} lines for {len(emb)} embeddings")
    return emb, names, meta
