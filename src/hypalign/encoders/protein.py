"""Protein sequence encoders: a dilated residue CNN trained from scratch (the CPU default) and ESM-2
through ``transformers`` from a local directory.

Both return a pooled ``(batch, dim)`` feature from a masked mean over residues (ProtCLIP's code
averages over padding too — spec §3.5 quirk 3 — which makes a protein's feature depend on the
batch it is in; here padding, ``<cls>`` and ``<eos>`` are excluded).

Tokens follow ESM-2's alphabet (``<cls>=0, <pad>=1, <eos>=2, <unk>=3``, the residues ``L A G V S E R
T I D P K Q N F Y M H W C X B U Z O``, ``.``, ``-``, ``<null_1>``, ``<mask>=32``), so the CNN and ESM
read the same ids and an MLM head predicts the same 33 classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hypalign.encoders import quiet_loading
from hypalign.errors import InputError

ESM_TOKENS = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q",
              "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>"]
CLS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 32
RESIDUE_IDS = range(4, 29)
_LUT = np.full(256, UNK, dtype=np.int64)
for _i, _t in enumerate(ESM_TOKENS):
    if len(_t) == 1:
        _LUT[ord(_t)] = _i
        _LUT[ord(_t.lower())] = _i


def tokenize(seqs: Sequence[str], max_len: int, crop: str = "start", rng: np.random.Generator | None = None,
             ) -> tuple[Tensor, Tensor]:
    """``(ids, mask)``: ``<cls> residues <eos>`` padded with ``<pad>`` to the longest (at most ``max_len``
    tokens). Longer sequences are cropped to ``max_len - 2`` residues: from the start, or at a random
    offset (``crop="random"``, training augmentation; needs ``rng``)."""
    if max_len < 3:
        raise ValueError("max_len must leave room for <cls>, one residue and <eos>")
    keep = max_len - 2
    crops = []
    for s in seqs:
        if len(s) > keep:
            off = int(rng.integers(0, len(s) - keep + 1)) if crop == "random" and rng is not None else 0
            s = s[off : off + keep]
        crops.append(s)
    width = max(len(s) for s in crops) + 2 if crops else 2
    ids = np.full((len(crops), width), PAD, dtype=np.int64)
    for r, s in enumerate(crops):
        ids[r, 0] = CLS
        ids[r, 1 : 1 + len(s)] = _LUT[np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8)]
        ids[r, 1 + len(s)] = EOS
    t = torch.from_numpy(ids)
    return t, t != PAD


def mask_residues(ids: Tensor, rate: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """ProtCLIP's MLM corruption (spec §3.3; quirk 5 kept on purpose, as in the paper): ``rate`` of each
    protein's residues (at least one; never ``<cls>``/``<eos>``/``<pad>``) become ``<mask>`` — all of them,
    no BERT 80/10/10. Returns ``(masked ids, labels)`` with ``labels = -100`` where nothing is predicted."""
    pick = torch.from_numpy(rng.random(tuple(ids.shape)) < rate) & residue_mask(ids)
    first = residue_mask(ids).float().argmax(1)  # a protein with no pick still predicts one residue
    none = ~pick.any(1) & residue_mask(ids).any(1)
    pick[none.nonzero().squeeze(1), first[none]] = True
    return ids.masked_fill(pick, MASK), torch.where(pick, ids, torch.full_like(ids, -100))


def mask_spans(ids: Tensor, rate: float, max_span: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """ProtCLIP's segment corruption for BSR (``torch_mask_fragments``, spec §3.3): spans of
    ``U[max_span // 2, max_span]`` residues at random starts are masked until at least ``rate`` of each
    protein's residues are covered. The reference code shrinks ``max_span`` inside its loop so later spans
    get shorter (quirk); here every span is drawn from the same range. Returns ``(masked ids, labels)``."""
    rm = residue_mask(ids)
    pick = torch.zeros_like(rm)
    lengths = rm.sum(1).tolist()
    for r, n in enumerate(lengths):
        if n == 0:
            continue
        want, got = max(1, int(np.ceil(rate * n))), 0
        row = np.zeros(n, dtype=bool)
        while got < want:
            span = int(rng.integers(max(1, max_span // 2), max_span + 1))
            start = int(rng.integers(0, max(1, n - span + 1)))
            row[start : start + span] = True
            got = int(row.sum())
        pick[r, 1 : 1 + n] = torch.from_numpy(row)  # residues sit after <cls>
    return ids.masked_fill(pick, MASK), torch.where(pick, ids, torch.full_like(ids, -100))


def mask_bert(ids: Tensor, rate: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """ESM-2's (BERT's) corruption: ``rate`` of the residue positions (at least one per protein) are predicted; of
    those 80 % become ``<mask>``, 10 % a random residue (of the 20 standard ones), 10 % stay. Returns ``(corrupted
    ids, labels)`` (``labels = -100`` where nothing is predicted)."""
    rm = residue_mask(ids)
    pick = torch.from_numpy(rng.random(tuple(ids.shape)) < rate) & rm
    first = rm.float().argmax(1)
    none = ~pick.any(1) & rm.any(1)
    pick[none.nonzero().squeeze(1), first[none]] = True
    u = torch.from_numpy(rng.random(tuple(ids.shape)))
    randoms = torch.from_numpy(rng.integers(4, 24, tuple(ids.shape)))  # L A G … C: ids 4–23
    out = torch.where(pick & (u < 0.8), torch.full_like(ids, MASK), ids)
    out = torch.where(pick & (u >= 0.8) & (u < 0.9), randoms, out)
    return out, torch.where(pick, ids, torch.full_like(ids, -100))


def mask_absorbing(ids: Tensor, steps: int, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """DPLM's absorbing discrete diffusion forward process (spec §5.1): per protein a time ``t ~ U{1..T}``
    (``T = steps``); every residue becomes ``<mask>`` with probability ``t / T``. Returns ``(noised ids, labels,
    weights, t)``: labels at the masked residues (-100 elsewhere), each masked residue weighted by the linear
    ``λ(t) = (T − t + 1) / T`` (DPLM's loss: ``Σ λ(t) · CE`` over masked residues / their count)."""
    t = torch.from_numpy(rng.integers(1, steps + 1, ids.shape[0]))
    pick = (torch.from_numpy(rng.random(tuple(ids.shape))) < (t.double() / steps)[:, None]) & residue_mask(ids)
    lam = ((steps - t + 1).double() / steps).float()
    weights = torch.where(pick, lam[:, None].expand_as(ids), torch.zeros(ids.shape))
    return ids.masked_fill(pick, MASK), torch.where(pick, ids, torch.full_like(ids, -100)), weights, t


def residue_mask(ids: Tensor) -> Tensor:
    """True at residue positions (not ``<cls>``, ``<eos>``, ``<pad>``)."""
    return (ids != PAD) & (ids != CLS) & (ids != EOS)


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class _DilatedBlock(nn.Module):
    def __init__(self, dim: int, dilation: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x: (B, L, D)
        h = self.norm(x) * mask.unsqueeze(-1)
        # activation and dropout on the conv's contiguous (B, D, L) output: on a transposed view both are
        # slower on CPU (with them there, their backward took more time than the convolutions')
        h = self.drop(self.act(self.conv(h.transpose(1, 2))))
        return x + h.transpose(1, 2)


class ResidueCNN(nn.Module):
    """Dilated residual 1-d CNN over residue embeddings (ByteNet-style; CARP, Yang et al. 2022, uses the
    same block for protein language modelling): ``embed -> [LayerNorm, dilated conv, GELU, +x] x n ->
    LayerNorm``; dilations cycle ``1, 2, 4, 8`` so 8 blocks of kernel 5 see ~120 residues around each.

    ``forward(ids, mask)`` returns the pooled feature ``(B, 2 dim)``: masked mean and max over residues
    (max pooling picks up short motifs, as in DeepGO's CNN); ``residues(ids, mask)`` the per-residue
    states ``(B, L, dim)`` (for MLM and segment objectives). Defaults are sized for CPU training: 128
    channels, 6 blocks (dilations 1, 2, 4, 8, 1, 2; ~73 residues of context), ~0.5 M parameters, no dropout
    (random crops over a few epochs do not overfit, and drawing dropout masks is slow on CPU)."""

    def __init__(self, dim: int = 128, layers: int = 6, kernel: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        self.width = dim
        self.dim = 2 * dim
        self.embed = nn.Embedding(len(ESM_TOKENS), dim, padding_idx=PAD)
        self.blocks = nn.ModuleList(_DilatedBlock(dim, 2 ** (i % 4), kernel, dropout) for i in range(layers))
        self.norm = nn.LayerNorm(dim)

    def residues(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, mask)
        return self.norm(x)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.pool(self.residues(ids, mask), ids)

    def pool(self, h: Tensor, ids: Tensor) -> Tensor:
        """``(B, 2 dim)``: masked mean and max of residue states ``h``."""
        rm = residue_mask(ids)
        mx = h.masked_fill(~rm.unsqueeze(-1), float("-inf")).amax(1)
        return torch.cat([masked_mean(h, rm), torch.where(torch.isfinite(mx), mx, 0.0)], dim=-1)


class ESMEncoder(nn.Module):
    """ESM-2 (any size) from a local Hugging Face directory (``EsmModel``; nothing downloaded).

    ``freeze_layers=k`` freezes the embeddings and the first ``k`` transformer layers (``-1``: all of it)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, freeze_layers: int = 0,
                 config: dict | None = None) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import EsmConfig, EsmModel

        if config is not None:  # architecture only; weights come from a saved model (from_pretrained)
            self.model = EsmModel(EsmConfig(**config), add_pooling_layer=False)
        else:
            if path is None:
                raise InputError("ESMEncoder needs a local ESM-2 directory")
            p = Path(path)
            if not (p / "config.json").is_file():
                raise InputError(f"{p}: not a Hugging Face model directory (no config.json)")
            try:
                with quiet_loading():  # a protein-lm run's model/ has an LM head the encoder does not use: not reported
                    self.model, info = EsmModel.from_pretrained(str(p), local_files_only=True, add_pooling_layer=False,
                                                                output_loading_info=True)
            except (RuntimeError, OSError, ValueError) as e:  # shapes that disagree with config.json, a broken file
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise InputError(f"{p}: not a loadable ESM-2 model ({first})") from e
            missing = [k for k in info.get("missing_keys", []) if not k.startswith("contact_head.")]
            if missing:
                raise InputError(f"{p}: not an ESM-2 encoder: {len(missing)} weights missing (e.g. {missing[0]})")
        if self.model.config.vocab_size != len(ESM_TOKENS):  # the tokenizer here writes ESM-2 ids
            vs = self.model.config.vocab_size
            raise InputError(f"ESM model: vocab_size {vs}, expected ESM-2's {len(ESM_TOKENS)}")
        self.dim = int(self.model.config.hidden_size)
        self.freeze(freeze_layers)

    def freeze(self, layers: int) -> None:
        """Freeze the embeddings and the first ``layers`` transformer layers; ``-1``: every parameter."""
        if layers < 0:
            self.model.requires_grad_(False)
        elif layers:
            self.model.embeddings.requires_grad_(False)
            for layer in self.model.encoder.layer[:layers]:
                layer.requires_grad_(False)

    def residues(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state

    @property
    def width(self) -> int:
        return self.dim

    def memoize(self, on: bool = True) -> None:
        """For a tower frozen whole: remember the pooled embedding of every distinct input (its unpadded ids) once
        computed, in eval mode and without gradients, so each protein passes through the trunk once per run —
        training on whole sequences, validation and the transfer reference alike. Not saved with the model."""
        self._memo: dict[bytes, Tensor] | None = {} if on else None

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``(B, dim)`` pooled embeddings (remembered ones reused, see :meth:`memoize`)."""
        memo = getattr(self, "_memo", None)
        if memo is None or any(p.requires_grad for p in self.model.parameters()):
            return self.pool(self.residues(ids, mask), ids)
        keys = [ids[i][mask[i]].cpu().numpy().tobytes() for i in range(ids.shape[0])]
        missing = [i for i, k in enumerate(keys) if k not in memo]
        if missing:
            sub, sub_mask = ids[missing], mask[missing]
            width = int(sub_mask.sum(1).max())
            training = self.model.training
            self.model.eval()
            with torch.no_grad():
                pooled = self.pool(self.residues(sub[:, :width], sub_mask[:, :width]), sub[:, :width])
            self.model.train(training)
            for i, row in zip(missing, pooled.cpu(), strict=True):
                memo[keys[i]] = row
        return torch.stack([memo[k] for k in keys]).to(ids.device)

    def pool(self, h: Tensor, ids: Tensor) -> Tensor:
        """``(B, dim)``: masked mean of the residue states (no ``<cls>``/``<eos>``/padding; quirk 3 fixed)."""
        return masked_mean(h, residue_mask(ids))
