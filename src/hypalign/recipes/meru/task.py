"""MERU's / CLIP's task for the shared trainer: image–caption batches from a dataset directory, the chosen objectives,
and the evaluation on the test directory (:mod:`.evaluation`).

A batch specification is a ``(B, 3)`` tensor of rows ``(image, caption, augmentation seed)``: every epoch a seeded
permutation of the training images in batches of ``batch_size / world`` (the trainer deals them to the processes),
each image with one of its captions drawn from a generator seeded by ``(seed, epoch)`` — so a resumed run sees the
same pairs and pixels. Images are held in memory as ``uint8`` at ``image_size`` (squeezed, transparency on white) and
augmented per batch with MERU's random resized crop (area ``[crop_scale, 1]``, no flip), then scaled to ``[-1, 1]``.

Texts go through a :class:`TextBank`: frozen sentence-encoder features computed once and cached (the default), or
the lower layers' token states cached and the model's tuned top layers finishing them (``text_tune``).

Training data too big for memory streams from WebDataset tar shards instead (``--data shards/{00000..00999}.tar``;
:mod:`.stream`): the same batches' content, read shard by shard, split across ranks, resumed exactly.

The ``tree`` objective (class tree in ``labels``): the internal nodes of the tree (every proper prefix of a class
path) are texts too (their last name); each node entails the captions and images below it and its child nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign import distributed as dist_utils
from hypalign.data.images import batch_augment
from hypalign.data.imagetext import ImageTextSet, read_captions
from hypalign.data.sampler import mix_seed
from hypalign.data.shards import is_shard_spec
from hypalign.errors import InputError
from hypalign.models.meru import ImageText, small_vit_config
from hypalign.recipes.meru.config import MERUConfig, resolve_objectives
from hypalign.recipes.meru.data import TextBank, load_pixels, to_input
from hypalign.recipes.meru.stream import LiveText, ShardSource
from hypalign.train import Task


def data_dirs(cfg: MERUConfig, say: Callable[[str], None]) -> tuple[Path, Path | None]:
    """The training and test dataset directories of ``cfg`` (the emoji split built on first use)."""
    if cfg.data == "emoji":
        from hypalign.data.emoji import emoji_split

        train = emoji_split(cfg.split, "train", say)
        return train, Path(cfg.test_data) if cfg.test_data else emoji_split(cfg.split, "test", say)
    return Path(cfg.data), Path(cfg.test_data) if cfg.test_data else None


def tree_nodes(ds: ImageTextSet) -> tuple[list[tuple[str, ...]], np.ndarray, list[list[int]]]:
    """The class tree's internal nodes (proper prefixes of the class paths, sorted), each node's parent node (-1 at
    the top) and every image's ancestor nodes."""
    if not ds.labels:
        raise InputError(f"{ds.root / 'captions.jsonl'}: the tree objective needs \"labels\" (class paths)")
    nodes = sorted({lab[:k] for lab in ds.labels for k in range(1, len(lab))})
    index = {n: i for i, n in enumerate(nodes)}
    parent = np.array([index.get(n[:-1], -1) for n in nodes], dtype=np.int64)
    anc = [[index[lab[:k]] for k in range(1, len(lab))] for lab in ds.labels]
    return nodes, parent, anc


class MERUTask(Task):
    def __init__(self, cfg: MERUConfig, seed: int = 0, say: Callable[[str], None] | None = None) -> None:
        say = say or (lambda m: None)
        self.cfg, self.seed, self.say = cfg, seed, say
        self.objectives = resolve_objectives(cfg)
        train_dir, self.test_dir = data_dirs(cfg, say)
        self.world = dist_utils.world_size()
        if cfg.batch_size % self.world or cfg.batch_size // self.world < 2:
            raise InputError(f"batch size {cfg.batch_size} does not split into {self.world} processes of >= 2 pairs")
        self.use_tree = "tree" in self.objectives.names
        self.stream: ShardSource | None = None
        self.bank: TextBank | LiveText
        if cfg.data != "emoji" and is_shard_spec(cfg.data):
            if self.use_tree:
                raise InputError(f"{cfg.data}: the tree objective reads the whole class tree; it needs a dataset "
                                 "directory (captions.jsonl), not streamed shards")
            self.stream = ShardSource(cfg, self.world, seed, say)
            self.bank = self.stream.text
        else:
            self._load_directory(train_dir, cfg, say)
        torch.manual_seed(seed)  # the initial weights follow the run's seed
        image_cfg = (small_vit_config(cfg.image_size, cfg.patch_size, cfg.vit_width, cfg.vit_depth, cfg.vit_heads)
                     if cfg.image_encoder == "vit" else None)
        self.model = ImageText(kind=cfg.kind, embed_dim=cfg.embed_dim, image_config=image_cfg,
                               image_path=None if cfg.image_encoder == "vit" else cfg.image_encoder,
                               text_dim=self.bank.dim, text_config=self.bank.text_config(), text_tune=cfg.text_tune,
                               c=cfg.c, learn_c=cfg.learn_c)
        if cfg.text_tune:
            self.model.text_layers.load_pretrained_layers(self.bank.path)  # type: ignore[union-attr]
        self._test_set: dict[str, Any] | None = None  # the test directory, read once (prepare_set)

    # -- data ---------------------------------------------------------------------------------------------------
    def _load_directory(self, train_dir: Path, cfg: MERUConfig, say: Callable[[str], None]) -> None:
        """The training dataset directory in memory: images at ``image_size``, captions through :class:`TextBank`
        (and the class tree's nodes for the tree objective)."""
        self.train = read_captions(train_dir, cfg.skip_invalid)
        if self.train.skipped:
            say(f"{train_dir}: {self.train.skipped} unreadable images left out")
        if len(self.train) < cfg.batch_size:
            raise InputError(f"{train_dir}: {len(self.train)} images, fewer than one batch of {cfg.batch_size}")
        say(f"loading {len(self.train)} training images at {cfg.image_size} px")
        self.pixels = load_pixels(self.train.images, cfg.image_size)
        texts = list(dict.fromkeys(self.train.texts))
        where = {t: i for i, t in enumerate(texts)}
        self.caption_row = np.array([where[t] for t in self.train.texts], dtype=np.int64)
        self.node_row = np.zeros(0, dtype=np.int64)
        if self.use_tree:
            self.nodes, self.node_parent, self.image_anc = tree_nodes(self.train)
            self.node_row = np.arange(len(self.nodes)) + len(texts)
            texts += [n[-1] for n in self.nodes]
        self.bank = TextBank(texts, cfg, say)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        if self.stream is not None:
            return self.stream.batches(epoch)
        n, per = len(self.train), self.cfg.batch_size // self.world
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        perm = torch.randperm(n, generator=g)
        counts = torch.from_numpy(np.diff(self.train.text_offsets))
        pick = (torch.rand(n, generator=g, dtype=torch.float64) * counts).long().clamp_max(counts - 1)
        caption = torch.from_numpy(self.train.text_offsets[:-1]) + pick
        specs = []
        for b in range(n // per):
            idx = perm[b * per : (b + 1) * per]
            seeds = torch.full((per,), mix_seed(self.seed, epoch, b), dtype=torch.long)
            specs.append(torch.stack([idx, caption[idx], seeds], dim=1))
        return specs[: len(specs) - len(specs) % self.world] if len(specs) >= self.world else specs

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.stream is not None:
            return self.stream.make_batch(spec)
        idx = spec[:, 0]
        x = to_input(self.pixels[idx])
        x = batch_augment(x, int(spec[0, 2]), scale=(self.cfg.crop_scale, 1.0))
        batch = {"pixels": x, **self.bank.inputs(self.caption_row[spec[:, 1].numpy()], "text")}
        if self.use_tree:
            anc = [self.image_anc[i] for i in idx.tolist()]
            used = sorted({a for row in anc for a in row})
            local = {a: k for k, a in enumerate(used)}
            pairs_i = [(local[a], i) for i, row in enumerate(anc) for a in row]
            child = [(local[int(self.node_parent[a])], local[a]) for a in used if self.node_parent[a] >= 0]
            batch.update(self.bank.inputs(self.node_row[np.array(used, dtype=np.int64)], "parent"))
            a_i = torch.tensor([p for p, _ in pairs_i], dtype=torch.long)
            i_i = torch.tensor([i for _, i in pairs_i], dtype=torch.long)
            batch.update(tree_anc_of_text=a_i, tree_text=i_i, tree_anc_of_image=a_i, tree_image=i_i,
                         tree_anc_of_node=torch.tensor([p for p, _ in child], dtype=torch.long),
                         tree_node=torch.tensor([c for _, c in child], dtype=torch.long))
        return batch

    def iterate(self, specs: Sequence[torch.Tensor]) -> Iterable[dict[str, torch.Tensor]]:
        return (self.make_batch(s) for s in specs)

    def batch_items(self, batch: Any) -> int:
        return int(batch["pixels"].shape[0])

    # -- loss ---------------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        m: ImageText = model.module if hasattr(model, "module") else model  # type: ignore[assignment]
        out = self.objectives(model(batch), batch, model)
        if self.stream is not None and self.cfg.skip_invalid:  # bad samples passed over so far (metrics.jsonl)
            out["skipped_samples"] = torch.tensor(float(self.stream.skipped))
        return {**out, **{k: torch.tensor(v) for k, v in m.scalars().items()}}

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self.test_dir is None:
            return {}
        from hypalign.recipes.meru.evaluation import evaluate_set, prepare_set

        if self._test_set is None:
            self._test_set = prepare_set(self.test_dir, self.cfg, self.say)
        m = model.module if hasattr(model, "module") else model
        return evaluate_set(m, self._test_set, self.cfg)  # type: ignore[arg-type]
