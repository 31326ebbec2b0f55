"""The structure tokenizer's task for the shared trainer: cropped backbone batches, the LFQ objectives, and the
reconstruction evaluation on held-out chains (:mod:`hypalign.eval.structure`).

A batch specification is a ``(B, 2)`` tensor of rows ``(chain, crop start)``: every epoch a seeded permutation of the
training chains in batches of ``batch_size / world``, each chain longer than ``crop`` cut to a window whose start is
drawn from a generator seeded by ``(seed, epoch)`` — a resumed run sees the same windows. Coordinates are centred on
each window's CA mean (the model is invariant to it; it keeps the numbers small).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hypalign import distributed as dist_utils
from hypalign.data.sampler import window_batches
from hypalign.data.structures import StructureSet, concat_sets, pad_chains
from hypalign.errors import InputError
from hypalign.models.structok import StructureTokenizer
from hypalign.recipes.structok.config import StructokConfig, resolve_objectives
from hypalign.train import Task


def load_parts(cfg: StructokConfig, say: Callable[[str], None]) -> tuple[StructureSet, StructureSet | None]:
    """The training chains and the test chains of ``cfg`` (the packaged chains' split, or the user's directories)."""
    if cfg.data == "promod3":
        from hypalign.data.structures import load_structures, make_structure_split, read_split_ids, split_dir

        split = Path(cfg.split) if cfg.split not in ("small", "full") else split_dir(cfg.split)
        if not (split / "train.txt").is_file():
            if cfg.split not in ("small", "full"):
                raise InputError(f"{split}: not a split directory (expected train.txt, valid.txt, test.txt)")
            make_structure_split(cfg.split, say=say)
        ss = load_structures()
        row = {c: i for i, c in enumerate(ss.ids)}
        parts = {}
        for part in ("train", "test"):
            ids = read_split_ids(split, part)
            unknown = [c for c in ids if c not in row]
            if unknown:
                raise InputError(f"{split / (part + '.txt')}: chain {unknown[0]} is not in the packaged chains")
            parts[part] = ss.subset([row[c] for c in ids])
        return parts["train"], parts["test"]
    train = read_structure_dir(Path(cfg.data), say)
    return train, read_structure_dir(Path(cfg.test_data), say) if cfg.test_data else None


def read_structure_dir(root: Path, say: Callable[[str], None]) -> StructureSet:
    """Every chain of every PDB / mmCIF file in ``root`` (sorted; ``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, also
    gzipped), stretches split at chain breaks."""
    from hypalign.data.structures import read_structure_file

    if not root.is_dir():
        raise InputError(f"{root}: not a directory (expected PDB / mmCIF files)")
    exts = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(exts))
    if not files:
        raise InputError(f"{root}: no PDB / mmCIF files")
    sets, skipped = [], 0
    for f in files:
        ss, rep = read_structure_file(f)
        sets.append(ss)
        skipped += rep.skipped_nonstandard + rep.skipped_incomplete
    say(f"{root}: {sum(len(s) for s in sets)} chains from {len(files)} files ({skipped} residues left out)")
    return concat_sets(sets)


def build_model(cfg: StructokConfig) -> StructureTokenizer:
    return StructureTokenizer(d=cfg.d, heads=cfg.heads, k=cfg.neighbours, n_mp=cfg.mp_layers, n_enc_tf=cfg.enc_layers,
                              n_dec=cfg.dec_layers, n_bits=cfg.bits, alphabet=cfg.alphabet)


class StructokTask(Task):
    def __init__(self, cfg: StructokConfig, seed: int = 0, say: Callable[[str], None] | None = None) -> None:
        say = say or (lambda m: None)
        self.cfg, self.seed, self.say = cfg, seed, say
        self.objectives = resolve_objectives(cfg)
        train, self.test = load_parts(cfg, say)
        keep = np.flatnonzero(train.lengths() >= cfg.min_length)
        if len(keep) == 0:
            raise InputError(f"no training chain of at least {cfg.min_length} residues (--min-length)")
        self.train = train.subset(keep)
        self.world = dist_utils.world_size()
        if cfg.batch_size % self.world:
            raise InputError(f"batch size {cfg.batch_size} does not split into {self.world} processes")
        if len(self.train) < cfg.batch_size:
            raise InputError(f"{len(self.train)} training chains, fewer than one batch of {cfg.batch_size}")
        say(f"{len(self.train)} training chains, {len(self.test) if self.test else 0} test chains")
        self.tokens: list[np.ndarray] = []
        if cfg.alphabet == "3di":  # foldseek's states of whole chains, cropped with them
            from hypalign.models.structok import tokens_3di

            self.tokens = [tokens_3di(self.train.backbone(i)) for i in range(len(self.train))]
        torch.manual_seed(seed)
        self.model = build_model(cfg)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        return window_batches(self.train.lengths(), self.cfg.crop, self.cfg.batch_size // self.world, self.world,
                              self.seed, epoch)

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        crop = self.cfg.crop
        rows = spec.tolist()
        x, mask = pad_chains([self.train.backbone(int(i))[int(s) : int(s) + crop] for i, s in rows])
        batch = {"coords": x, "mask": mask}
        if self.tokens:
            tok = torch.zeros(mask.shape, dtype=torch.long)
            for j, (i, s) in enumerate(rows):
                t = self.tokens[int(i)][int(s) : int(s) + crop]
                tok[j, : len(t)] = torch.from_numpy(t)
            batch["tokens3di"] = tok
        return batch

    def iterate(self, specs: Sequence[torch.Tensor]) -> Iterable[dict[str, torch.Tensor]]:
        return (self.make_batch(s) for s in specs)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.objectives(model(batch), batch, model)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        if self.test is None:
            return {}
        from hypalign.recipes.structok.evaluation import evaluate_chains

        m = model.module if hasattr(model, "module") else model
        rows = np.arange(min(self.cfg.eval_chains, len(self.test)))
        return evaluate_chains(m, self.test.subset(rows))  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return {}
