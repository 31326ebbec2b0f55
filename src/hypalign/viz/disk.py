"""The Poincaré disk: 2-d pictures of hyperbolic embeddings.

* 2-d embeddings are drawn directly (Lorentz space components are mapped to the disk by the
  isometry ``p = x / (1 + sqrt(c) x_0)``; Euclidean ones are scaled into the unit disk).
* Higher dimensions are projected to 2-d first, by one of
  - ``umap``: UMAP on the embeddings' own geodesic distances (precomputed, so at most
    ``max_points`` points) with ``output_metric="hyperboloid"``; its 2-d hyperboloid output is
    mapped to the disk (McInnes et al. 2018, UMAP's hyperboloid embedding);
  - ``tangent-pca``: principal components of ``logmap0`` (the tangent space at the origin), then
    ``expmap0`` back: exact radii (distance to the origin = norm), angles from PCA. Fast, no extra
    package.

Points are drawn small and grey, edges of the hierarchy faintly, and the ``label_top`` nodes
closest to the origin (the top levels of a hierarchy trained from its closure) labelled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign.geometry import get_geometry, lorentz_to_poincare

METHODS = ("umap", "tangent-pca")


def to_disk(
    x: np.ndarray, geometry: str, c: float = 1.0, method: str = "tangent-pca", seed: int = 0
) -> np.ndarray:
    """``(n, 2)`` points in the unit Poincaré disk for embeddings ``x`` of ``geometry``."""
    x = np.asarray(x, dtype=np.float64)
    geom = get_geometry(geometry, c=c)
    t = torch.from_numpy(x)
    if x.shape[1] == 2 and method != "umap":
        if geometry == "lorentz":
            return (lorentz_to_poincare(t, c) * c**0.5).numpy()
        if geometry == "poincare":
            return x * c**0.5
        r = np.linalg.norm(x, axis=1).max() or 1.0
        return x / (1.05 * r)
    if method == "tangent-pca":
        hyperbolic = geometry in ("lorentz", "poincare")
        v = geom.logmap0(t).numpy() if hyperbolic else x
        _, _, vt = np.linalg.svd(v - v.mean(0), full_matrices=False)
        p2 = v @ vt[:2].T
        unit = p2 / np.maximum(np.linalg.norm(p2, axis=1, keepdims=True), 1e-12)
        if not hyperbolic:
            r = np.linalg.norm(x, axis=1, keepdims=True)
            return unit * r / (1.05 * max(float(r.max()), 1e-12))
        r = geom.dist(torch.zeros_like(t), t).numpy()[:, None]  # geodesic distance to the origin
        return unit * np.tanh(c**0.5 * r / 2)  # the unit disk point at that distance (curvature -1 units)
    if method == "umap":
        try:
            import umap
        except ImportError:
            from hypalign.errors import InputError

            raise InputError("--method umap needs umap-learn (pip install 'hypalign[viz]')") from None
        d = geom.cdist(t, t).double().numpy()
        np.fill_diagonal(d, 0.0)
        reducer = umap.UMAP(metric="precomputed", output_metric="hyperboloid", random_state=seed, n_components=2)
        h = reducer.fit_transform(d)
        z = np.sqrt(1.0 + (h * h).sum(1, keepdims=True))
        return h / (1.0 + z)
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def plot_disk(
    points: np.ndarray,
    path: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    edges: np.ndarray | None = None,
    label_top: int = 20,
    title: str | None = None,
    labels: np.ndarray | None = None,
) -> Path:
    """Draw disk points (from :func:`to_disk`) to ``path`` (png/pdf/svg), written atomically;
    ``labels`` colours points by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    p = np.asarray(points)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="black", lw=1))
    if edges is not None and len(edges):
        e = np.asarray(edges)
        if len(e) > 20000:
            e = e[np.random.default_rng(0).choice(len(e), 20000, replace=False)]
        from matplotlib.collections import LineCollection

        segs = np.stack([p[e[:, 0]], p[e[:, 1]]], axis=1)
        ax.add_collection(LineCollection(segs, colors="tab:blue", linewidths=0.2, alpha=0.25))
    if labels is not None:  # class-coloured points (metric-learning embeddings)
        ax.scatter(p[:, 0], p[:, 1], s=5, c=np.unique(np.asarray(labels), return_inverse=True)[1], cmap="tab10",
                   alpha=0.8, linewidths=0)
    else:
        ax.scatter(p[:, 0], p[:, 1], s=3, c="0.3", alpha=0.7, linewidths=0)
    if names is not None and label_top > 0:
        order = np.argsort(np.linalg.norm(p, axis=1))[:label_top]
        for i in order:
            ax.annotate(str(names[i]), p[i], fontsize=7, color="darkred", ha="center", va="bottom")
        ax.scatter(p[order, 0], p[order, 1], s=12, c="darkred")
    ax.set_xlim(-1.02, 1.02)
    ax.set_ylim(-1.02, 1.02)
    ax.set_aspect("equal")
    ax.axis("off")
    return _save(fig, ax, path, title)


def plot_radius_histograms(radii: np.ndarray, depth: np.ndarray, path: str | os.PathLike[str],
                           level_names: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Histograms of the distance from the origin per tree depth (MERU's generality: general concepts near the
    origin), one overlaid histogram per depth, to ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    r, depth = np.asarray(radii, dtype=np.float64), np.asarray(depth)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0.0, float(r.max(initial=1.0)) * 1.02 + 1e-9, 50)
    for k in np.unique(depth).tolist():
        name = level_names[k] if level_names is not None and k < len(level_names) else f"depth {k}"
        ax.hist(r[depth == k], bins=bins, alpha=0.5, density=True, label=f"{name} ({int((depth == k).sum())})")
    ax.set_xlabel("distance from the origin")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _save(fig, ax, path, title)


def _save(fig: Any, ax: Any, path: str | os.PathLike[str], title: str | None) -> Path:
    """Title the axes, write the figure to ``path`` atomically (format from the suffix), close it."""
    import matplotlib.pyplot as plt

    from hypalign.io import atomic_write

    if title:
        ax.set_title(title)
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
    plt.close(fig)
    return path
