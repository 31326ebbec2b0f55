"""Zero-shot classification: each sample takes the class whose embedding (e.g. of a text prompt) is
nearest in the geometry (MERU / ProtST protocol; for the sphere, nearest = highest cosine)."""

from __future__ import annotations

import numpy as np
import torch

from hypalign.geometry import Manifold


def zero_shot_accuracy(
    embeddings: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    class_embeddings: torch.Tensor | np.ndarray,
    geometry: Manifold,
) -> dict[str, float]:
    """``accuracy_micro`` (fraction of samples right) and ``accuracy_macro`` (mean per-class accuracy,
    over the classes present in ``labels``). ``labels[i]`` indexes the rows of ``class_embeddings``."""
    x = torch.as_tensor(np.asarray(embeddings) if isinstance(embeddings, np.ndarray) else embeddings)
    c = torch.as_tensor(np.asarray(class_embeddings) if isinstance(class_embeddings, np.ndarray) else class_embeddings)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != x.shape[0]:
        raise ValueError(f"{len(y)} labels for {x.shape[0]} embeddings")
    if y.min(initial=0) < 0 or y.max(initial=0) >= c.shape[0]:
        raise ValueError(f"labels must index the {c.shape[0]} class embeddings")
    with torch.no_grad():
        pred = geometry.cdist(x, c).argmin(1).numpy()
    correct = pred == y
    per_class = [correct[y == k].mean() for k in np.unique(y)]
    return {"accuracy_micro": float(correct.mean()), "accuracy_macro": float(np.mean(per_class))}
