"""Hyp-ViT metric learning recipe (Ermolov et al. 2022; spec §1) on the shared trainer.

Configuration plus the recipe's own parts: class-balanced batches (:mod:`hypalign.data.sampler`),
the pairwise cross-entropy (:mod:`hypalign.losses.pairwise`) over embeddings gathered from every
process *with* their gradient, and Recall@K / MAP@R in the embedding's own geometry on the
class-disjoint test split (:mod:`hypalign.eval.retrieval`). Defaults follow the paper (AdamW
wd 0.01, constant lr, grad-clip 3, c = 0.1, clip_r = 2.3, τ = 0.2 hyperbolic / 0.1 spherical,
emb 128, m = 2); the CPU default is the small CNN on scikit-learn's digits (0–4 train, 5–9 test).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hypalign import distributed as dist_utils
from hypalign.data.images import IMAGENET_MEAN, IMAGENET_STD, ImageSplit, ImageTransform, SplitDataset, load_dataset
from hypalign.data.sampler import ClassBalancedBatchSampler, mix_seed
from hypalign.errors import InputError
from hypalign.eval.retrieval import retrieval_metrics
from hypalign.models.encode import encode_batched
from hypalign.models.hypvit import HypViT
from hypalign.objectives import ObjectiveSet, ObjectiveSpec
from hypalign.objectives.library import PairwiseCE
from hypalign.options import check_options, opt
from hypalign.recipes.registry import Recipe
from hypalign.train import Task, TrainConfig, Trainer, finish_run, model_device

RECALL_KS = {"digits": (1, 2, 4, 8), "emoji": (1, 2, 4, 8), "folder": (1, 2, 4, 8), "cub": (1, 2, 4, 8, 16, 32),
             "cars": (1, 2, 4, 8, 16, 32),
             "sop": (1, 10, 100, 1000), "inshop": (1, 10, 20, 30, 40, 50)}


@dataclass
class HypViTConfig:
    data: str = opt("digits", "'digits' or 'emoji' (built in; emoji: 1,911 classes in three art styles, test "
                    "classes from held-out subgroups) or the dataset directory.")
    dataset_format: str = opt("digits", "Layout of --data.", choices=tuple(RECALL_KS))
    encoder: str = opt("cnn", "'cnn' (small CNN from scratch) or a local Hugging Face ViT/DeiT/DINO directory.")
    encoder_path: str | None = opt(None, "Local Hugging Face directory (set by --encoder DIR).", cli=False)
    freeze: int = opt(0, "Freeze patch embedding + this many first blocks (HF encoders).", min=0)
    emb_dim: int = opt(128, "Embedding dimension.", "--emb", min=2)
    geometry: str = opt("poincare", "poincare (Hyp-ViT) or sphere.", choices=("poincare", "sphere"))
    c: float = opt(0.1, "Curvature magnitude (curvature -c).", min=1e-6)
    clip_r: float | None = opt(2.3, "Feature clipping radius (0 = off).", min=0.0)
    tau: float | None = opt(None, "Temperature (default 0.2 poincare, 0.1 sphere).")
    batch_size: int = opt(80, "Images per step (classes x samples per class).", min=4)
    samples_per_class: int | None = opt(None, "Samples per class in a batch (default 16 for digits, else 2).", "--m",
                                        min=2)
    image_size: int = opt(224, "Crop size for image files.", min=8)
    resize: int = opt(256, "Test-time resize before the centre crop.", min=8)
    workers: int = opt(0, "DataLoader workers for image files.", min=0)
    eval_batch_size: int = opt(256, "Images per forward pass at evaluation.", min=1)
    ks: tuple[int, ...] = opt(help="Recall@K cut-offs (default by dataset format).", cli=False, default_factory=tuple)
    passes: int | None = opt(None, "Class permutations per epoch (default 1 as Hyp-ViT; digits: one pass over the "
                             "images).", min=1)

    def __post_init__(self) -> None:
        check_options(self)
        if self.data == "emoji":  # the built-in set names its own layout
            self.dataset_format = "emoji"
        if self.encoder not in ("cnn", "hf"):  # a directory: the Hugging Face model in it
            self.encoder, self.encoder_path = "hf", self.encoder
        if self.clip_r is not None and self.clip_r <= 0:
            self.clip_r = None  # 0 = off
        self.ks = tuple(self.ks)
        if self.tau is None:
            self.tau = 0.2 if self.geometry == "poincare" else 0.1
        if not self.ks:
            self.ks = RECALL_KS.get(self.dataset_format, (1, 2, 4, 8))
        if self.samples_per_class is None:
            self.samples_per_class = 16 if self.dataset_format == "digits" else 2
        if self.batch_size % self.samples_per_class:
            raise InputError(f"batch size {self.batch_size} is not a multiple of samples per class "
                             f"{self.samples_per_class}")


class HypViTTask(Task):
    def __init__(self, cfg: HypViTConfig, seed: int = 0, splits: dict[str, ImageSplit] | None = None) -> None:
        self.cfg, self.seed = cfg, seed
        self.splits = splits if splits is not None else load_dataset(
            cfg.dataset_format, None if cfg.data in ("digits", "emoji") else cfg.data)
        torch.manual_seed(seed)
        self.model = HypViT(encoder=cfg.encoder, encoder_path=cfg.encoder_path, freeze=cfg.freeze, emb_dim=cfg.emb_dim,
                            geometry=cfg.geometry, c=cfg.c, clip_r=cfg.clip_r)
        world = dist_utils.world_size()
        per_rank = cfg.batch_size // world
        if cfg.batch_size % world or per_rank % cfg.samples_per_class:
            raise InputError(f"batch size {cfg.batch_size} does not split into {world} processes × whole classes "
                             f"of {cfg.samples_per_class} samples")
        passes = cfg.passes
        if passes is None:
            passes = max(1, len(self.splits["train"]) // cfg.batch_size) if cfg.dataset_format == "digits" else 1
        self.world = world
        self.sampler = ClassBalancedBatchSampler(self.splits["train"].labels, per_rank // cfg.samples_per_class,
                                                 cfg.samples_per_class, seed, world, passes)
        self.train_tf, self.test_tf = transforms(cfg)
        self.objectives = ObjectiveSet({"pairwise_ce": PairwiseCE(1.0, samples_per_class=cfg.samples_per_class,
                                                                  tau=cfg.tau or 0.2)})

    # -- batches ---------------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[torch.Tensor]:
        """Every rank's class-balanced batches (interleaved by rank), each row ``(image index, augmentation seed)``;
        the seed mixes the batch's position in its rank's share and the rank."""
        out = []
        for i, idx in enumerate(self.sampler.batches(epoch)):
            b, r = divmod(i, self.world)
            seeds = torch.tensor([mix_seed(self.seed, epoch, b, p, r) for p in range(len(idx))])
            out.append(torch.stack([idx, seeds], dim=1))
        return out

    def iterate(self, specs: Sequence[torch.Tensor]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        ds = SplitDataset(self.splits["train"], self.train_tf, augment=True)
        if self.cfg.workers > 0 and ds.split.paths is not None:
            loader = torch.utils.data.DataLoader(ds, batch_sampler=[[tuple(r) for r in s.tolist()] for s in specs],
                                                 num_workers=self.cfg.workers, persistent_workers=False)
            return iter(loader)
        return (ds.load_batch(spec) for spec in specs)

    def batch_items(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    # -- loss ------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pairwise cross-entropy over the batch gathered from every process (with gradient)."""
        x, y = batch
        return self.objectives({"z": model(x)}, {"labels": y}, model)

    # -- evaluation --------------------------------------------------------------------------------------
    def embed_split(self, model: HypViT, split: ImageSplit, features: bool = False) -> torch.Tensor:
        """Embeddings (or encoder features) of every image of ``split``, eval transform, through the one batched
        inference path (:func:`~hypalign.models.encode.encode_batched`)."""
        ds = SplitDataset(split, self.test_tf, augment=False)
        dev = model_device(model)

        def run(idx: list[int]) -> torch.Tensor:
            x = torch.stack([ds.load(i, 0) for i in idx]).to(dev)
            return model.features(x) if features else model(x)

        return encode_batched(run, range(len(ds)), self.cfg.eval_batch_size, model=model)[0]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        m: HypViT = model  # type: ignore[assignment]
        metrics = ("recall", "map@r")
        if "test" in self.splits:
            x = self.embed_split(m, self.splits["test"])
            res = retrieval_metrics(x, self.splits["test"].labels, m.geometry, ks=self.cfg.ks, metrics=metrics)
        else:  # In-Shop: query vs gallery
            q, g = self.embed_split(m, self.splits["query"]), self.embed_split(m, self.splits["gallery"])
            res = retrieval_metrics(q, self.splits["query"].labels, m.geometry, gallery=g,
                                    gallery_labels=self.splits["gallery"].labels, ks=self.cfg.ks, metrics=metrics)
        return {k: float(v) for k, v in res.items() if k.startswith("recall@") or k == "map@r"}


def transforms(cfg: HypViTConfig) -> tuple[ImageTransform, ImageTransform]:
    """Train and test transforms; ViT models (not DINO/DeiT) use mean = std = 0.5 (spec §1.5)."""
    name = str(cfg.encoder_path or "").lower()
    vit = cfg.encoder == "hf" and "vit" in name and "dino" not in name and "deit" not in name
    mean, std = ((0.5,) * 3, (0.5,) * 3) if vit else (IMAGENET_MEAN, IMAGENET_STD)
    return (ImageTransform(cfg.image_size, cfg.resize, train=True, mean=mean, std=std),
            ImageTransform(cfg.image_size, cfg.resize, train=False, mean=mean, std=std))


def train_hypvit(cfg: HypViTConfig, train: TrainConfig, splits: dict[str, ImageSplit] | None = None) -> dict[str, Any]:
    """Train, evaluate, save ``runs/NAME/model/`` (``save_pretrained``) and ``eval.json``."""
    dist_utils.init_from_env(device=train.device)  # under torchrun: join first, so the sampler knows its rank
    task = HypViTTask(cfg, seed=train.seed, splits=splits)
    if train.best_metric is None:  # the caller's config stays as given
        train = replace(train, best_metric="recall@1", best_mode="max")
    trainer = Trainer(task, train, extra_config={"recipe": "hypvit", "hypvit": asdict(cfg)})
    result = trainer.fit()
    return finish_run(trainer, result, task.model, None, "images_per_s", extra=result.metrics)


def load_run_model(run: str | Path, which: str = "model") -> tuple[HypViT, dict[str, Any]]:
    """The trained model of a run directory (``model/`` written at the end, or a checkpoint tag)."""
    from hypalign.runs import read_run_config

    run = Path(run)
    cfg = read_run_config(run, "hypvit")
    from hypalign.runs import load_trained_model

    h = cfg["hypvit"]
    build = lambda: HypViT(encoder=h["encoder"], encoder_path=h["encoder_path"], freeze=h["freeze"],  # noqa: E731
                           emb_dim=h["emb_dim"], geometry=h["geometry"], c=h["c"], clip_r=h["clip_r"])
    return load_trained_model(run, HypViT, which, build=build), cfg


def iter_images(paths: Iterable[Path]) -> Iterator[Path]:
    from hypalign.data.images import IMAGE_SUFFIXES

    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield p


# ---- what `hypalign eval|embed RUN` do with a Hyp-ViT run ----------------------------------------------------
def _run_config(run: Any) -> HypViTConfig:
    return HypViTConfig(**{k: v for k, v in run.recipe_config.items() if k != "ks"})


def evaluate_run(run: Any, which: str | None = None, features_out: Path | None = None,
                 embeddings_out: Path | None = None, plot: Path | None = None, **_: Any) -> dict[str, float]:
    """Recall@K and MAP@R on the held-out classes; optionally the test split's encoder features / embeddings
    (.npy) and a Poincaré-disk drawing of the test embeddings."""
    import numpy as np

    from hypalign.io import save_npy

    model, _cfg = load_run_model(run.path, which or "model")
    task = HypViTTask(_run_config(run), seed=run.train_config.get("seed", 0))
    model.eval()
    with torch.no_grad():
        result = task.evaluate(model)
        split = task.splits.get("test") or task.splits["query"]
        if features_out is not None:
            save_npy(features_out, task.embed_split(model, split, features=True).numpy().astype(np.float32))
        if embeddings_out is not None or plot is not None:
            emb = task.embed_split(model, split).numpy()
            if embeddings_out is not None:
                save_npy(embeddings_out, emb.astype(np.float32))
            if plot is not None:
                from hypalign.viz.disk import plot_disk, to_disk

                pts = to_disk(emb, model.geometry_name, model.c, method="tangent-pca")
                plot_disk(pts, plot, labels=split.labels,
                          title=f"{run.path.name}: test classes ({model.geometry_name})")
    return result


def embed_run(run: Any, inputs: list[str], out: Path, features: bool = False, batch_size: int | None = None,
              **_: Any) -> dict[str, Any]:
    """Embed image files or folders (searched recursively) with the eval transform; names to ``out`` + .txt."""
    import numpy as np

    from hypalign.data.images import ImageSplit
    from hypalign.io import atomic_write_text, save_npy

    model, _cfg = load_run_model(run.path)
    files = list(iter_images(Path(p) for p in inputs))
    if not files:
        raise InputError("no images found in the given paths")
    ds = SplitDataset(ImageSplit(np.zeros(len(files), dtype=np.int64), paths=files), transforms(_run_config(run))[1],
                      augment=False)

    def encode(idx: list[int]) -> torch.Tensor:
        x = torch.stack([ds.load(i, 0) for i in idx])
        return model.features(x) if features else model(x)

    emb = encode_batched(encode, range(len(ds)), batch_size or 64, model=model)[0].numpy().astype(np.float32)
    save_npy(out, emb)
    atomic_write_text(Path(out).with_suffix(".txt"), "".join(f"{p}\n" for p in files))
    return {"n": int(emb.shape[0]), "dim": int(emb.shape[1]), "geometry": model.geometry_name,
            "c": None if features else model.c}


RECIPE = Recipe(
    name="hypvit",
    summary="Hyp-ViT metric learning (pairwise cross-entropy, Poincaré ball or sphere).",
    config=HypViTConfig,
    train=lambda cfg, train, say=None: train_hypvit(cfg, train),
    load_model=lambda run_dir, which="model": load_run_model(run_dir, which)[0],
    evaluate=evaluate_run,
    embed=embed_run,
    train_defaults={"epochs": 100, "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 0, "schedule": "constant",
                    "grad_clip": 3.0, "eval_every": 10, "log_every": 10, "optimizer": "adamw"},
    best_metric=("recall@1", "max"),
    objectives={"pairwise_ce": ObjectiveSpec("pairwise_ce", 1.0, help="Hyp-ViT's pairwise cross-entropy")},
    evaluate_options=frozenset({"which", "features_out", "embeddings_out", "plot"}),
    embed_options=frozenset({"features", "batch_size"}),
)
