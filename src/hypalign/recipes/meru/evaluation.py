"""What ``hypalign eval RUN`` reports for MERU / CLIP on a dataset directory (metrics from :mod:`hypalign.eval`).

* ``i2t_recall@K`` / ``t2i_recall@K`` (K = 1, 5, 10): cross-modal retrieval, relevance by caption text
  (:func:`hypalign.eval.imagetext.cross_modal_recall`);
* with class paths (``labels``), at every level ``k`` of the tree (0 the coarsest; ``leaf`` the last): zero-shot
  top-1 — ``zs{k}_top1`` micro (the fraction of images right: the figure reported) and ``zs{k}_top1_macro`` (mean
  per-class accuracy, torchmetrics' default that MERU's code reports) — among the classes of that level present in
  the set, each class embedded from :data:`~hypalign.recipes.meru.config.PROMPTS` with its name;
* tree metrics of the leaf predictions: ``mistake_severity``, ``tree_induced_error``, ``hierarchical_precision`` /
  ``hierarchical_recall`` (:func:`hypalign.eval.imagetext.tree_metrics`);
* generality: Kendall τ between tree depth (level names, then images) and distance from the origin, and the mean
  radius per depth (:func:`hypalign.eval.imagetext.generality_tau`; 0 on the sphere, which has no origin);
* the curvature, alphas and logit scale, and ``images_per_s`` (image embedding throughput).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign.data.imagetext import ImageTextSet, read_captions
from hypalign.eval.classification import zero_shot_accuracy
from hypalign.eval.imagetext import caption_relevance, cross_modal_recall, generality_tau, tree_metrics
from hypalign.models.encode import encode_batched
from hypalign.models.meru import ImageText
from hypalign.recipes.meru.config import PROMPTS, MERUConfig
from hypalign.recipes.meru.data import TextBank, load_pixels, to_input


def prepare_set(root: Path, cfg: MERUConfig, say: Callable[[str], None] | None = None,
                level: int | None = None) -> dict[str, Any]:
    """Read a dataset directory once for repeated evaluation: pixels, distinct captions and their relevance, the
    classes and prompts of every level (or only ``level``), all texts through one :class:`TextBank`."""
    ds = read_captions(root, cfg.skip_invalid)
    pixels = load_pixels(ds.images, cfg.image_size)
    distinct, i2t, t2i = caption_relevance(ds.texts, ds.text_image(), len(ds))
    texts = list(distinct)
    levels: list[dict[str, Any]] = []
    if ds.labels:
        wanted = range(ds.depth) if level is None else [level % ds.depth]
        for k in wanted:
            paths, idx = ds.classes(k)
            start = len(texts)
            texts += [tpl.format(p[-1]) for p in paths for tpl in PROMPTS]
            prompt_class = np.repeat(np.arange(len(paths)), len(PROMPTS))
            levels.append({"level": k, "paths": paths, "labels": idx,
                           "rows": np.arange(start, start + len(prompt_class)), "prompt_class": prompt_class})
    names_start = len(texts)
    node_depth: list[int] = []
    if ds.labels:  # generality: every class name of every level, plain
        for k in range(ds.depth):
            paths, _ = ds.classes(k)
            texts += [p[-1] for p in paths]
            node_depth += [k] * len(paths)
    return {"ds": ds, "pixels": pixels, "i2t": i2t, "t2i": t2i, "n_captions": len(distinct), "levels": levels,
            "names": np.arange(names_start, len(texts)), "name_depth": np.array(node_depth, dtype=np.int64),
            "bank": TextBank(texts, cfg, say)}


@torch.no_grad()
def embed_images(model: ImageText, pixels_u8: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, float]:
    """Embeddings of ``uint8`` images (no augmentation), and images per second."""
    was = model.training
    model.eval()
    t0 = time.perf_counter()
    emb = encode_batched(lambda idx: model.encode_image(to_input(pixels_u8[idx])), range(len(pixels_u8)),
                         batch_size, model=model)[0]
    rate = len(pixels_u8) / max(time.perf_counter() - t0, 1e-9)
    model.train(was)
    return emb, rate


@torch.no_grad()
def evaluate_set(model: ImageText, prep: dict[str, Any], cfg: MERUConfig) -> dict[str, float]:
    """The metrics of the module docstring on a prepared set (:func:`prepare_set`)."""
    was = model.training
    model.eval()
    ds: ImageTextSet = prep["ds"]
    images, rate = embed_images(model, prep["pixels"], cfg.eval_batch_size)
    pooled = prep["bank"].pooled(model)
    lift = model.embed_text_features
    out: dict[str, float] = {"images_per_s": rate, "n_images": float(len(ds))}
    captions = lift(pooled[: prep["n_captions"]])
    out.update(cross_modal_recall(images, captions, prep["i2t"], prep["t2i"], model.geometry))
    for lv in prep["levels"]:
        classes = model.class_embeddings(pooled[lv["rows"]], torch.from_numpy(lv["prompt_class"]), len(lv["paths"]))
        name = "leaf" if lv["level"] == ds.depth - 1 else str(lv["level"])
        acc = zero_shot_accuracy(images, lv["labels"], classes, model.geometry)
        out[f"zs{name}_top1"], out[f"zs{name}_top1_macro"] = acc["accuracy_micro"], acc["accuracy_macro"]
        if name == "leaf":
            pred = model.geometry.cdist(images, classes).argmin(1).numpy()
            out.update(tree_metrics([lv["paths"][p] for p in pred], [lv["paths"][t] for t in lv["labels"]]))
    if len(prep["names"]):
        names = lift(pooled[prep["names"]])
        points = torch.cat([names.double(), images.double()])
        depth = np.r_[prep["name_depth"], np.full(len(images), ds.depth)]
        out.update(generality_tau(points, depth, model.geometry))
    out.update(model.scalars())
    model.train(was)
    return out


@torch.no_grad()
def plot_set(model: ImageText, prep: dict[str, Any], path: Path, max_images: int = 1500) -> list[Path]:
    """The tree's class names and (up to ``max_images``) images in the Poincaré disk (tangent PCA: exact radii), the
    names nearest the origin labelled, points coloured by depth; with MERU also ``<path stem>-radii<suffix>``, the
    histograms of the distance from the origin per depth. Returns the files written."""
    from hypalign.viz.disk import plot_disk, plot_radius_histograms, to_disk

    ds: ImageTextSet = prep["ds"]
    keep = np.linspace(0, len(ds) - 1, min(len(ds), max_images)).round().astype(np.int64)
    images, _ = embed_images(model, prep["pixels"][torch.from_numpy(keep)])
    texts = model.embed_text_features(prep["bank"].pooled(model, prep["names"])) if len(prep["names"]) else \
        images[:0]
    bank_texts = prep["bank"].texts
    names = [bank_texts[i] for i in prep["names"]] + [""] * len(images)
    depth = np.r_[prep["name_depth"], np.full(len(images), max(ds.depth, 1))]
    points = torch.cat([texts.double(), images.double()]).numpy()
    geo = "lorentz" if model.kind == "meru" else "sphere"
    disk = to_disk(points, geo, model.curvature or 1.0, method="tangent-pca")
    top = int((prep["name_depth"] <= 1).sum()) if len(prep["names"]) else 0
    out = [plot_disk(disk, path, names=names, label_top=min(top, 40), labels=depth,
                     title=f"{model.kind}: class names by level and images")]
    if model.kind == "meru":
        r = model.geometry.dist(torch.zeros(1, points.shape[1], dtype=torch.float64), torch.from_numpy(points))
        levels = [f"level {k} names" for k in range(ds.depth)] + ["images"]
        out.append(plot_radius_histograms(r.numpy(), depth, path.with_name(f"{path.stem}-radii{path.suffix}"),
                                          levels, title="distance from the origin by depth"))
    return out
