"""MERU / CLIP training batches streamed from WebDataset tar shards (:mod:`hypalign.data.shards`): for sets too big
for memory (RedCaps' 12M pairs), split across ranks under ``torchrun``, resumed exactly.

A batch specification is ``(rank, j, epoch)``; :meth:`ShardSource.batches` lists every rank's specifications
interleaved (``[(0, 0), (1, 0), …, (0, 1), …]``) so that the trainer's ``specs[rank::world]`` gives rank ``r`` its own
stream. A batch's images are decoded by ``loader_threads`` threads (Pillow releases the GIL), augmented like the
in-memory batches (MERU's random resized crop, seeded by ``(seed, epoch, j, rank)``), and its captions go through
the text tower's frozen part as they arrive (:class:`LiveText`): nothing is precomputed over the whole set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from hypalign.data.images import batch_augment
from hypalign.data.sampler import mix_seed
from hypalign.data.shards import Pair, ShardPlan, ShardReader, decode_sample, expand_shards, pairs_from, shard_sizes
from hypalign.errors import InputError
from hypalign.recipes.meru.config import MERUConfig
from hypalign.recipes.meru.data import to_input


class LiveText:
    """The text tower's frozen part run on each batch's captions (no whole-set cache): pooled features (frozen
    tower) or the real-token states below the tuned layers (``text_tune``), in :class:`TextBank`'s input format."""

    def __init__(self, cfg: MERUConfig) -> None:
        from hypalign.encoders.text import SentenceEncoder, minilm_path

        self.path = cfg.text_path or str(minilm_path())
        self.tuned = cfg.text_tune
        self.encoder = SentenceEncoder(self.path, max_length=64 if self.tuned else 256)
        n_layers = int(self.encoder.model.config.num_hidden_layers)
        if self.tuned and not 1 <= self.tuned <= n_layers:
            raise InputError(f"text tuning: {self.path} has {n_layers} layers; tune 1 to {n_layers}, not {self.tuned}")

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def text_config(self) -> dict[str, Any] | None:
        return json.loads(self.encoder.model.config.to_json_string()) if self.tuned else None

    def inputs(self, texts: Sequence[str], prefix: str) -> dict[str, torch.Tensor]:
        if self.tuned:
            from hypalign.encoders.text import token_states

            states, offsets = token_states(self.encoder, texts, self.tuned)
            return {f"{prefix}_tokens": torch.from_numpy(states),
                    f"{prefix}_lengths": torch.from_numpy(np.diff(offsets))}
        return {f"{prefix}_features": torch.from_numpy(self.encoder.encode(list(texts), batch_size=256))}


class ShardSource:
    """Training batches from shards (module docstring); ``skipped`` counts bad samples left out (``skip_invalid``)."""

    def __init__(self, cfg: MERUConfig, world: int, seed: int, say: Callable[[str], None]) -> None:
        self.cfg, self.seed = cfg, seed
        paths = expand_shards(cfg.data)
        say(f"indexing {len(paths)} shards")
        sizes = shard_sizes(paths)
        self.plan = ShardPlan(paths, sizes, world, cfg.batch_size // world, seed)
        self.reader = ShardReader(paths, cfg.image_size)
        self.text = LiveText(cfg)
        self.pool = ThreadPoolExecutor(max_workers=cfg.loader_threads) if cfg.loader_threads > 1 else None
        self.skipped = 0
        say(f"{sum(sizes)} pairs in {len(paths)} shards; {self.plan.batches_per_rank()} batches of "
            f"{self.plan.per_rank} per process and epoch")

    def batches(self, epoch: int) -> list[torch.Tensor]:
        n, world = self.plan.batches_per_rank(), self.plan.world
        return [torch.tensor([r, j, epoch]) for j in range(n) for r in range(world)]

    def _pairs(self, rank: int, j: int, epoch: int) -> list[Pair]:
        """Batch ``j``'s pairs: the window's raw samples read in order, decoded by the threads; bad ones (with
        ``skip_invalid``) replaced from after the window (:func:`~hypalign.data.shards.pairs_from`)."""
        plan, per, size = self.plan, self.plan.per_rank, self.cfg.image_size
        raws = [(self.reader.sample(s, i), self.reader.paths[s])
                for s, i in (plan.locate(epoch, rank, j * per + k) for k in range(per))]

        def one(item: tuple[dict[str, Any], Any]) -> Pair | InputError:
            try:
                return decode_sample(item[0], item[1], size)
            except InputError as exc:
                return exc

        got = list(self.pool.map(one, raws)) if self.pool is not None else [one(r) for r in raws]
        bad = [g for g in got if isinstance(g, InputError)]
        if bad and not self.cfg.skip_invalid:
            raise bad[0]
        pairs = [g for g in got if isinstance(g, Pair)]
        if bad:
            more, passed = pairs_from(plan, self.reader, epoch, rank, (j + 1) * per, len(bad), skip_invalid=True)
            pairs += more
            self.skipped += len(bad) + passed
        return pairs

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        rank, j, epoch = (int(v) for v in spec.tolist())
        pairs = self._pairs(rank, j, epoch)
        x = to_input(torch.from_numpy(np.stack([p.pixels for p in pairs])).permute(0, 3, 1, 2))
        x = batch_augment(x, mix_seed(self.seed, epoch, j, rank), scale=(self.cfg.crop_scale, 1.0))
        return {"pixels": x, **self.text.inputs([p.text for p in pairs], "text")}

