"""DPLM-2's task for the shared trainer: the chains of the structure split as (structure tokens, amino acids) pairs —
tokens from the structure tokenizer, computed once — windowed, noised by :func:`hypalign.models.dplm2.mask_pair`.

A batch specification is a ``(B, 4)`` tensor of rows ``(chain, window start, epoch, batch number)``: every epoch a
seeded permutation of the training chains (:func:`hypalign.data.sampler.window_batches`); the noise of a batch is
drawn from a generator seeded by ``(seed, epoch, batch number)`` — a resumed run sees the same windows and masks.
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
from hypalign.data.sequences import SequenceSet
from hypalign.data.structures import StructureSet
from hypalign.errors import InputError
from hypalign.models.dplm2 import DPLM2, STRUCT_BOS, STRUCT_EOS, STRUCT_OFFSET, STRUCT_PAD, mask_pair
from hypalign.recipes.dplm2.config import DPLM2Config, resolve_objectives
from hypalign.recipes.dplm2.tokens import cached_structure_tokens, load_tokenizer
from hypalign.train import Task


def pair_ids(seqs: SequenceSet, codes: Sequence[np.ndarray], rows: Sequence[tuple[int, int]], residues: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(struct_ids, aa_ids)`` ``(B, P)`` of each ``(chain, start)`` window of at most ``residues`` residues:
    ``<s-bos> codes+4 <s-eos>`` beside ``<cls> amino acids <eos>``, padded alike."""
    from hypalign.data.sequences import window_ids

    aa = window_ids(seqs, rows, residues + 2)
    st = torch.full(aa.shape, STRUCT_PAD, dtype=torch.long)
    for r, (i, s) in enumerate(rows):
        c = codes[int(i)][int(s) : int(s) + residues]
        st[r, 0], st[r, 1 : 1 + len(c)], st[r, 1 + len(c)] = STRUCT_BOS, torch.from_numpy(c) + STRUCT_OFFSET, STRUCT_EOS
    return st, aa


def chain_sequences(ss: StructureSet) -> SequenceSet:
    return SequenceSet.from_strings(ss.ids, [ss.sequence(i) for i in range(len(ss))])


def build_model(cfg: DPLM2Config, n_bits: int, say: Callable[[str], None] | None = None) -> DPLM2:
    """The model of ``cfg`` for a tokenizer of ``n_bits`` bits; with ``--init`` its trunk (and amino-acid embeddings
    and head) from a protein-lm run or an ESM-2 directory, whose shape replaces ``--d/--layers/--heads``."""
    from hypalign.recipes.dplm2.config import chosen_objectives

    chosen = chosen_objectives(cfg)
    extra = {"repa_dim": n_bits if chosen.get("repa") else 0,
             "resdiff_hidden": cfg.resdiff_hidden if chosen.get("resdiff") else 0}
    if cfg.init.strip().lower() in ("", "none"):
        return DPLM2(cfg.esm_config(), n_bits=n_bits, struct_head=cfg.struct_head, **extra)
    import json

    src = Path(cfg.init)
    src = src / "model" if (src / "model" / "config.json").is_file() else src
    if not (src / "config.json").is_file() or not (src / "model.safetensors").is_file():
        raise InputError(f"--init {cfg.init}: expected a protein-lm run or a Hugging Face ESM directory "
                         "(config.json and model.safetensors)")
    init_cfg = json.loads((src / "config.json").read_text())
    if init_cfg.get("model_type") != "esm":
        raise InputError(f"--init {cfg.init}: config.json has model_type {init_cfg.get('model_type')!r}, not esm")
    esm = cfg.esm_config()
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "layer_norm_eps", "emb_layer_norm_before", "token_dropout", "rope_theta"):
        if key in init_cfg:
            esm[key] = init_cfg[key]
    if esm["vocab_size"] != 33:
        raise InputError(f"--init {cfg.init}: vocabulary of {esm['vocab_size']} tokens; ESM-2's alphabet has 33")
    model = DPLM2(esm, n_bits=n_bits, struct_head=cfg.struct_head, **extra)
    from transformers import EsmForMaskedLM

    from hypalign.encoders import quiet_loading

    with quiet_loading():  # transformers maps the saved names (ESM's gamma/beta …) onto the current ones
        src_model = EsmForMaskedLM.from_pretrained(str(src), local_files_only=True)
    state = {k: v for k, v in src_model.state_dict().items() if "position_ids" not in k}
    missing, _ = model.load_trunk(state)
    missing = [k for k in missing if "pooler" not in k and "contact_head" not in k and "rotary" not in k]
    if missing:
        raise InputError(f"--init {cfg.init}: {len(missing)} trunk weights missing (first: {missing[0]})")
    if say:
        say(f"trunk from {src}: {esm['num_hidden_layers']} layers x {esm['hidden_size']}")
    return model


class DPLM2Task(Task):
    def __init__(self, cfg: DPLM2Config, seed: int = 0, say: Callable[[str], None] | None = None) -> None:
        from hypalign.recipes.structok.task import load_parts

        say = say or (lambda m: None)
        self.cfg, self.seed = cfg, seed
        self.objectives = resolve_objectives(cfg)
        self.tokenizer = load_tokenizer(cfg.tokenizer)
        train, self.test = load_parts(cfg, say)  # type: ignore[arg-type]
        self.train = train.subset(np.flatnonzero(train.lengths() >= cfg.min_length))
        if len(self.train) == 0:
            raise InputError(f"no training chain of at least {cfg.min_length} residues (--min-length)")
        self.world = dist_utils.world_size()
        if cfg.batch_size % self.world:
            raise InputError(f"batch size {cfg.batch_size} does not split into {self.world} processes")
        if len(self.train) < cfg.batch_size:
            raise InputError(f"{len(self.train)} training chains, fewer than one batch of {cfg.batch_size}")
        self.seqs = chain_sequences(self.train)

        self.codes, self.feats = cached_structure_tokens(self.tokenizer, self.train, say)
        say(f"{len(self.train)} training chains tokenized ({int(self.train.lengths().sum())} residues), "
            f"{len(self.test) if self.test else 0} test chains")
        self.last_chains: dict[str, list] = {}
        torch.manual_seed(seed)
        self.model = build_model(cfg, self.tokenizer.n_bits, say)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        specs = window_batches(self.train.lengths(), self.cfg.crop, self.cfg.batch_size // self.world, self.world,
                               self.seed, epoch)
        return [torch.cat([s, torch.tensor([[epoch, b]]).expand(len(s), 2)], 1) for b, s in enumerate(specs)]

    def make_batch(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = [(int(i), int(s)) for i, s in spec[:, :2].tolist()]
        st, aa = pair_ids(self.seqs, self.codes, rows, self.cfg.crop)
        rng = np.random.default_rng(mix_seed(self.seed, int(spec[0, 2]), int(spec[0, 3])))
        batch = mask_pair(st, aa, self.cfg.diffusion_steps, rng, self.cfg.mix())  # type: ignore[arg-type]
        if self.model.repa_dim or self.model.resdiff_hidden:  # each window's continuous codes, at its residues
            feats = torch.zeros(*st.shape, self.model.n_bits)
            for r, (i, s) in enumerate(rows):
                f = self.feats[i][s : s + self.cfg.crop]
                feats[r, 1 : 1 + len(f)] = torch.from_numpy(f)
            batch["struct_feats"], batch["feat_mask"] = feats, st >= STRUCT_OFFSET
        if self.model.resdiff_hidden:  # ResDiff's step and noise, drawn with the batch
            batch["resdiff_t"] = torch.from_numpy(rng.integers(0, self.model.resdiff.steps, tuple(st.shape)))
            batch["resdiff_eps"] = torch.from_numpy(rng.standard_normal((*st.shape, self.model.n_bits))).float()
        return batch

    def iterate(self, specs: Sequence[torch.Tensor]) -> Iterable[dict[str, torch.Tensor]]:
        return (self.make_batch(s) for s in specs)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch["struct_in"], batch["aa_in"], batch["attention_block"])
        return self.objectives(out, batch, model)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The test chains' figures (:func:`~hypalign.recipes.dplm2.evaluation.evaluate_chains`); the per-chain lists
        of the last evaluation are kept in ``last_chains`` (written beside ``eval.json``)."""
        if self.test is None:
            return {}
        from hypalign.recipes.dplm2.evaluation import evaluate_chains

        m = model.module if hasattr(model, "module") else model
        rows = np.arange(min(self.cfg.eval_chains, len(self.test)))
        got = evaluate_chains(m, self.tokenizer, self.test.subset(rows), self.cfg.eval_steps,  # type: ignore[arg-type]
                              per_chain=True)
        self.last_chains = {k: got.pop(k) for k in [k for k, v in got.items() if isinstance(v, list)]}
        return got

    def state_dict(self) -> dict[str, Any]:
        return {}
