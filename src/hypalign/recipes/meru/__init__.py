"""MERU (Desai et al. 2023; spec §2) and its CLIP baseline: hyperbolic image–text alignment with entailment cones.

The recipe is its configuration (:mod:`.config`: options, the menu of objectives), the model
(:mod:`hypalign.models.meru`), its task for the shared trainer (:mod:`.task`) and its evaluation (:mod:`.evaluation`,
metrics from :mod:`hypalign.eval.imagetext`). ``hypalign train meru`` and ``hypalign train clip`` are the same recipe
with kind ``meru`` (Lorentz model, learned curvature, contrastive + entailment) or ``clip`` (unit sphere, contrastive).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign import distributed as dist_utils
from hypalign.errors import InputError
from hypalign.models.meru import ImageText
from hypalign.recipes.meru.config import OBJECTIVES, PROMPTS, CLIPConfig, MERUConfig
from hypalign.recipes.meru.task import MERUTask
from hypalign.recipes.registry import Recipe


def train_meru(cfg: MERUConfig, train: Any, say: Any = None, name: str = "meru") -> dict[str, Any]:
    """Train, save ``RUN/model/`` (``save_pretrained``) and ``RUN/eval.json`` (the final evaluation on the test
    directory)."""
    from hypalign.train import Trainer, finish_run

    say = say or (lambda m: None)
    dist_utils.init_from_env(device=train.device)
    task = MERUTask(cfg, seed=train.seed, say=say)
    if task.test_dir is None and train.best_metric is not None:
        train = replace(train, best_metric=None)  # nothing to select the best by without a test set
    trainer = Trainer(task, train, extra_config={"recipe": name, name: asdict(cfg)})
    return finish_run(trainer, trainer.fit(), task.model, lambda: task.evaluate(task.model), "train_images_per_s")


def load_run_model(run: Any, which: str = "model") -> ImageText:
    """The trained model of a run (``model/`` written at the end; ``latest``/``best`` checkpoints otherwise)."""
    from hypalign.runs import load_trained_model

    return load_trained_model(run, ImageText, which)


def _config(run: Any) -> MERUConfig:
    return MERUConfig(**run.recipe_config)


def evaluate_run(run: Any, data: Path | None = None, level: int | None = None, which: str | None = None,
                 plot: Path | None = None, say: Any = None, **_: Any) -> dict[str, float]:
    """``hypalign eval RUN [--data DIR] [--level K] [--plot disk.png]``: the run's test set (or any dataset
    directory); ``--plot`` also draws its class names and images in the Poincaré disk (and, for MERU, the histograms
    of the distance from the origin per depth next to it)."""
    from hypalign.recipes.meru.evaluation import evaluate_set, plot_set, prepare_set
    from hypalign.recipes.meru.task import data_dirs

    cfg = _config(run)
    root = Path(data) if data is not None else data_dirs(cfg, say or (lambda m: None))[1]
    if root is None:
        raise InputError(f"{run.path}: trained on {cfg.data} without a test set; give --data DIR")
    model = load_run_model(run, which or "model")
    prep = prepare_set(root, cfg, say, level)
    out = evaluate_set(model, prep, cfg)
    if plot is not None:
        plot_set(model, prep, Path(plot))
    return out


def _texts_of(inputs: list[str]) -> list[str]:
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        out += [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()] if p.is_file() \
            else [item]
    return out


def _images_of(inputs: list[str]) -> list[Path]:
    from hypalign.recipes.hypvit import iter_images

    files = list(iter_images(Path(p) for p in inputs))
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: not found")
    if not files:
        raise InputError("no images found in the given paths")
    return files


def _embed_texts(model: ImageText, cfg: MERUConfig, texts: list[str]) -> torch.Tensor:
    from hypalign.recipes.meru.data import TextBank

    with torch.no_grad():
        bank = TextBank(texts, cfg)
        return model.embed_text_features(bank.pooled(model))


def _embed_image_files(model: ImageText, files: list[Path], size: int, batch_size: int = 256) -> torch.Tensor:
    from hypalign.recipes.meru.data import load_pixels
    from hypalign.recipes.meru.evaluation import embed_images

    return embed_images(model, load_pixels(files, size), batch_size)[0]


def embed_run(run: Any, inputs: list[str], out: Path, texts: bool = False, batch_size: int | None = None,
              **_: Any) -> dict[str, Any]:
    """``hypalign embed RUN IMAGES… -o OUT`` (files or folders) or ``--texts`` (strings, or files of one text per
    line): embeddings in the run's geometry (Lorentz space components, or unit vectors) and names to OUT.txt."""
    from hypalign.io import atomic_write_text, save_npy

    model, cfg = load_run_model(run), _config(run)
    if texts:
        names = _texts_of(inputs)
        emb = _embed_texts(model, cfg, names)
    else:
        files = _images_of(inputs)
        names = [str(p) for p in files]
        emb = _embed_image_files(model, files, model.image_size, batch_size or 256)
    save_npy(out, emb.numpy().astype(np.float32))
    atomic_write_text(Path(out).with_suffix(".txt"), "".join(n.replace("\n", " ") + "\n" for n in names))
    return {"n": int(emb.shape[0]), "dim": int(emb.shape[1]), "geometry": model.geometry.name,
            "c": model.curvature if model.kind == "meru" else None}


def predict_run(run: Any, inputs: list[str], classes: str | None = None, top: int | None = None,
                traverse: bool = False, as_json: bool = False, echo: Any = print, **_: Any) -> None:
    """``hypalign predict RUN IMAGES --classes "cat,dog,…"``: zero-shot, the top classes of every image with their
    scores (Lorentzian inner product for MERU, cosine for CLIP), class embeddings from the recipe's prompts.
    ``--traverse`` (MERU): instead, the texts met walking from each image to the origin, each the nearest of those
    whose entailment cone contains the point (:func:`hypalign.eval.imagetext.image_traversal`)."""
    names = [c.strip() for c in (classes or "").split(",") if c.strip()]
    if len(names) < 2:
        raise InputError('--classes: give at least two class names, comma-separated ("cat,dog")')
    model, cfg = load_run_model(run), _config(run)
    files = _images_of(inputs)
    if traverse:
        _traverse(model, cfg, files, names, as_json, echo)
        return
    prompts = [tpl.format(n) for n in names for tpl in PROMPTS]
    from hypalign.recipes.meru.data import TextBank

    with torch.no_grad():
        pooled = TextBank(prompts, cfg).pooled(model)
        cls = model.class_embeddings(pooled, torch.arange(len(names)).repeat_interleave(len(PROMPTS)), len(names))
        scores = model.scores(_embed_image_files(model, files, model.image_size), cls)
    k = min(top or 5, len(names))
    best = scores.topk(k, dim=1)
    for f, vals, idx in zip(files, best.values.tolist(), best.indices.tolist(), strict=True):
        pred = [{"class": names[i], "score": round(v, 6)} for v, i in zip(vals, idx, strict=True)]
        echo(json.dumps({"image": str(f), "top": pred}) if as_json else
             f"{f}: " + ", ".join(f"{p['class']} ({p['score']:.4f})" for p in pred))


def _traverse(model: ImageText, cfg: MERUConfig, files: list[Path], names: list[str], as_json: bool,
              echo: Any) -> None:
    from hypalign.eval.imagetext import image_traversal

    if model.kind != "meru":
        raise InputError("--traverse walks to the origin through entailment cones: a meru run (CLIP has neither)")
    texts = _embed_texts(model, cfg, names)
    images = _embed_image_files(model, files, model.image_size)
    for f, x in zip(files, images, strict=True):
        path = [names[i] for i in image_traversal(x, texts, model.geometry)]
        echo(json.dumps({"image": str(f), "traversal": path}) if as_json else f"{f}: " + " -> ".join(path))


_COMMON: dict[str, Any] = {
    "load_model": lambda run_dir, which="model": load_run_model(run_dir, which),
    "evaluate": evaluate_run,
    "embed": embed_run,
    "predict": predict_run,
    "train_defaults": {"epochs": 15, "lr": 5e-4, "weight_decay": 0.2, "betas": (0.9, 0.98), "warmup_steps": 100,
                       "schedule": "cosine", "eval_every": 5, "log_every": 10, "optimizer": "adamw"},
    "best_metric": ("zsleaf_top1", "max"),
    "objectives": OBJECTIVES,
    "evaluate_options": frozenset({"data", "level", "which", "plot"}),
    "embed_options": frozenset({"texts", "batch_size"}),
    "predict_options": frozenset({"classes", "top", "traverse"}),
}

RECIPE = Recipe(name="meru", summary="MERU: hyperbolic image-text alignment with entailment cones (Lorentz model).",
                config=MERUConfig, train=lambda cfg, train, say=None: train_meru(cfg, train, say, "meru"),
                **_COMMON)
CLIP_RECIPE = Recipe(name="clip", summary="CLIP baseline: MERU's towers and budget on the unit sphere.",
                     config=CLIPConfig, train=lambda cfg, train, say=None: train_meru(cfg, train, say, "clip"),
                     **_COMMON)

__all__ = ["CLIP_RECIPE", "OBJECTIVES", "RECIPE", "CLIPConfig", "ImageText", "MERUConfig", "MERUTask", "train_meru"]
