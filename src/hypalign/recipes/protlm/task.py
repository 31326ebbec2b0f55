"""The protein language model's task for the shared trainer: windows of the training sequences, corrupted by the
configured masking (:func:`hypalign.encoders.protein.mask_absorbing` or :func:`~hypalign.encoders.protein.
mask_bert`), and the masked-token evaluation on held-back sequences.

A batch specification is a ``(B, 4)`` tensor of rows ``(sequence, window start, epoch, batch number)``: every epoch a
seeded permutation of the training sequences in batches of ``batch_size / world``; a sequence longer than the window
gets a start drawn from a generator seeded by ``(seed, epoch)``; the corruption of a batch is drawn from a generator
seeded by ``(seed, epoch, batch number)`` — a resumed run sees the same windows and the same masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign import distributed as dist_utils
from hypalign.data.sampler import mix_seed, window_batches
from hypalign.data.sequences import SequenceSet, window_ids
from hypalign.errors import InputError
from hypalign.recipes.protlm.config import ProtLMConfig, resolve_objectives
from hypalign.train import Task


def load_pool(cfg: ProtLMConfig, say: Callable[[str], None]) -> SequenceSet:
    """The configured sequences minus the held-out sets (:func:`hypalign.data.sequences.exclude_held_out`)."""
    from hypalign.data.sequences import exclude_held_out, read_sequence_file, swissprot_sequences

    pool = swissprot_sequences(say) if cfg.data == "swissprot" else read_sequence_file(Path(cfg.data),
                                                                                       cfg.skip_invalid)
    keep = exclude_held_out(pool, cfg.exclude_specs(), cfg.exclude_identity, say)
    return pool.subset(keep) if len(keep) < len(pool) else pool


def split_pool(pool: SequenceSet, valid_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train rows, valid rows)``: ``valid_size`` sequences drawn by ``seed``, held back from training."""
    if len(pool) <= valid_size:
        raise InputError(f"{len(pool)} sequences: not more than --valid-size {valid_size}")
    rng = np.random.default_rng(mix_seed(seed, 0x5EC))
    valid = np.sort(rng.choice(len(pool), valid_size, replace=False))
    return np.setdiff1d(np.arange(len(pool)), valid), valid


def build_model(cfg: ProtLMConfig) -> nn.Module:
    from transformers import EsmConfig, EsmForMaskedLM

    return EsmForMaskedLM(EsmConfig(**cfg.esm_config()))


def corrupt(ids: torch.Tensor, cfg: ProtLMConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """The batch the objective reads: ``input_ids`` (corrupted), ``attention_mask``, ``mlm_labels``,
    ``mlm_weights``."""
    from hypalign.encoders.protein import PAD, mask_absorbing, mask_bert

    if cfg.masking == "diffusion":
        noised, labels, weights, _ = mask_absorbing(ids, cfg.diffusion_steps, rng)
    else:
        noised, labels = mask_bert(ids, cfg.mask_rate, rng)
        weights = (labels != -100).float()
    return {"input_ids": noised, "attention_mask": (ids != PAD).long(), "mlm_labels": labels, "mlm_weights": weights}


class ProtLMTask(Task):
    def __init__(self, cfg: ProtLMConfig, seed: int = 0, say: Callable[[str], None] | None = None) -> None:
        say = say or (lambda m: None)
        self.cfg, self.seed = cfg, seed
        self.objectives = resolve_objectives(cfg)
        pool = load_pool(cfg, say)
        train_rows, valid_rows = split_pool(pool, cfg.valid_size, seed)
        self.train, self.valid = pool.subset(train_rows), pool.subset(valid_rows)
        self.world = dist_utils.world_size()
        if cfg.batch_size % self.world:
            raise InputError(f"batch size {cfg.batch_size} does not split into {self.world} processes")
        if len(self.train) < cfg.batch_size:
            raise InputError(f"{len(self.train)} training sequences, fewer than one batch of {cfg.batch_size}")
        say(f"{len(self.train)} training sequences ({int(self.train.lengths().sum())} residues), "
            f"{len(self.valid)} held back")
        torch.manual_seed(seed)
        self.model = build_model(cfg)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        specs = window_batches(self.train.lengths(), self.cfg.max_len - 2, self.cfg.batch_size // self.world,
                               self.world, self.seed, epoch)
        return [torch.cat([s, torch.tensor([[epoch, b]]).expand(len(s), 2)], 1) for b, s in enumerate(specs)]

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = spec[:, :2].tolist()
        epoch, b = int(spec[0, 2]), int(spec[0, 3])
        ids = window_ids(self.train, rows, self.cfg.max_len)
        return corrupt(ids, self.cfg, np.random.default_rng(mix_seed(self.seed, epoch, b)))

    def iterate(self, specs: Sequence[torch.Tensor]) -> Iterable[dict[str, torch.Tensor]]:
        return (self.make_batch(s) for s in specs)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return self.objectives({"mlm_logits": logits}, batch, model)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from hypalign.recipes.protlm.evaluation import evaluate_lm

        m = model.module if hasattr(model, "module") else model
        return evaluate_lm(m, self.valid, self.cfg, train=self.train)

    def state_dict(self) -> dict[str, Any]:
        return {}
