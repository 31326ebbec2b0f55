"""DPLM-2: a multimodal protein language model over structure tokens and amino acids (Hsieh et al. 2025, "Elucidating
the Design Space of Multimodal Protein Language Models"; spec §5.1–5.2).

The input of a protein of ``L`` residues is two halves of equal padded length ``P = Lmax + 2``, concatenated::

    [ <s-bos> s_1 … s_L <s-eos> <s-pad>… ; <cls> a_1 … a_L <eos> <pad>… ]        (B, 2P)

with a modality embedding added (structure 0, amino acid 1) and **positions shared across the halves** (rotary
position ``i`` for ``s_i`` and for ``a_i``), through an ESM-2 trunk (``transformers.EsmForMaskedLM``: rotary, pre-LN;
its embedding table and LM head serve the amino-acid half, so a protein-lm run or an ESM-2 directory initialises it).

Structure tokens are the 13 sign bits of the structure tokenizer's lookup-free quantisation (code ``Σ_k [bit_k=+1]
2^k``, 8,192 codes). Ids: ``STRUCT_BOS/PAD/EOS/MASK = 0/1/2/3`` and code ``c`` → ``c + STRUCT_OFFSET`` (4). Two
ways to read and predict them (the design space's first axis, spec §5.2.1):

* ``index``: an embedding table of ``4 + 8192`` rows in, a softmax over the 8,192 codes out (DPLM-2);
* ``bit``: ``Linear(13 → d)`` of the ±1 code in (learned embeddings for the four specials), 13 binary logits out,
  one per bit (DPLM-2 Bit; the paper's recommended choice).

``attention_block`` (per protein) blocks attention across the halves: the single-modality task of the training
mixture, where each half is a language model of its own modality.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

STRUCT_BOS, STRUCT_PAD, STRUCT_EOS, STRUCT_MASK = 0, 1, 2, 3
STRUCT_OFFSET = 4
N_BITS = 13
#: ESM-2 ids of the 20 standard amino acids (``ESM_TOKENS[4:24]``: L A G V S E R T I D P K Q N F Y M H W C)
STANDARD_AA_IDS = tuple(range(4, 24))


def code_bits(codes: Tensor, n_bits: int = N_BITS) -> Tensor:
    """Bits ``(…, n_bits)`` in {0, 1} (int64) of code indices ``codes`` (bit 0 first)."""
    return (codes.unsqueeze(-1) >> torch.arange(n_bits, device=codes.device)) & 1


def bits_code(bits: Tensor) -> Tensor:
    """Code indices ``Σ_k bits_k 2^k`` of {0, 1} bits ``(…, n_bits)``."""
    return (bits.long() * (2 ** torch.arange(bits.shape[-1], device=bits.device))).sum(-1)

#: the training mixture's tasks (spec §5.1), in the order of ``DPLM2Config.task_mix``
TASKS = ("single", "folding", "inverse_folding", "joint")


def mask_pair(struct_ids: Tensor, aa_ids: Tensor, steps: int, rng: Any,
              mix: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)) -> dict[str, Tensor]:
    """DPLM-2's forward process on a batch of pairs (spec §5.1): per protein a task drawn from ``mix`` over
    :data:`TASKS` and noise levels ``t_s, t_a ~ U{1..T}`` (``T = steps``) drawn independently — *single*: both, with
    attention blocked across the halves; *folding*: ``t_a = 0`` (the sequence fully visible); *inverse folding*:
    ``t_s = 0``; *joint*: ``t_a = t_s``. Every residue token of a half becomes its mask with probability ``t/T``; a
    masked token is labelled with its code / amino acid and weighted by ``λ(t) = (T − t + 1)/T``.

    Returns ``struct_in``, ``aa_in`` (noised ids), ``struct_labels`` (codes, -100 where not masked), ``aa_labels``,
    ``struct_weights``, ``aa_weights`` (``λ`` where masked, else 0), ``attention_block`` (bool ``(B,)``), ``task``
    (``(B,)`` index into :data:`TASKS`). ``rng``: a ``numpy.random.Generator``."""
    import numpy as np

    from hypalign.encoders.protein import MASK, residue_mask

    b = aa_ids.shape[0]
    task = rng.choice(len(TASKS), b, p=np.asarray(mix, np.float64) / sum(mix))
    t_s = rng.integers(1, steps + 1, b)
    t_a = rng.integers(1, steps + 1, b)
    t_a = np.where(task == 1, 0, np.where(task == 3, t_s, t_a))
    t_s = np.where(task == 2, 0, t_s)
    out: dict[str, Tensor] = {}
    for name, ids, t, maskable, mask_id, offset in (
            ("struct", struct_ids, t_s, struct_ids >= STRUCT_OFFSET, STRUCT_MASK, STRUCT_OFFSET),
            ("aa", aa_ids, t_a, residue_mask(aa_ids), MASK, 0)):
        tt = torch.from_numpy(t).double()
        pick = (torch.from_numpy(rng.random(tuple(ids.shape))) < (tt / steps)[:, None]) & maskable
        lam = ((steps - tt + 1) / steps).float()
        out[f"{name}_in"] = ids.masked_fill(pick, mask_id)
        out[f"{name}_labels"] = torch.where(pick, ids - offset, torch.full_like(ids, -100))
        out[f"{name}_weights"] = torch.where(pick, lam[:, None].expand(ids.shape), torch.zeros(ids.shape))
    out["attention_block"] = torch.from_numpy(task == 0)
    out["task"] = torch.from_numpy(task)
    return out


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``(…, dim)`` of integer diffusion steps ``t`` (``sin`` then ``cos`` halves)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float().unsqueeze(-1) * freq
    return torch.cat([ang.sin(), ang.cos()], -1)


class ResDiff(nn.Module):
    """ResDiff (spec §5.2.2): a small denoising-diffusion MLP for the quantisation residual ``r = z − sign(z)`` of
    each residue, conditioned on ``c = W_q z_q + W_h h`` (``z_q`` the ±1 code, ``h`` the language model's state of
    the residue's structure token, mixed over the layers by learned softmax weights upstream) and the step ``t``;
    ε-prediction (DDPM, Ho et al. 2020) with a linear β schedule from 1e-4 to 0.02 over ``steps``. ``sample`` runs
    the reverse process from N(0, I). Folding then decodes ``z_q + r̂`` with the tokenizer's decoder (its continuous
    path) instead of ``z_q``."""

    def __init__(self, d_model: int, n_bits: int, hidden: int = 256, layers: int = 6, steps: int = 100) -> None:
        super().__init__()
        self.steps, self.hidden = steps, hidden
        self.cond_q, self.cond_h = nn.Linear(n_bits, hidden), nn.Linear(d_model, hidden)
        self.inp, self.time = nn.Linear(n_bits, hidden), nn.Linear(hidden, hidden)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU())
                                     for _ in range(layers)])
        self.out = nn.Linear(hidden, n_bits)
        betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)

    def forward(self, r_t: Tensor, t: Tensor, zq: Tensor, h: Tensor) -> Tensor:
        """ε̂ ``(…, n_bits)`` for noised residuals ``r_t`` at steps ``t`` (``(…)`` int)."""
        x = self.inp(r_t) + self.time(timestep_embedding(t, self.hidden)) + self.cond_q(zq) + self.cond_h(h)
        for block in self.blocks:
            x = x + block(x)
        return self.out(x)

    def loss(self, r0: Tensor, t: Tensor, eps: Tensor, zq: Tensor, h: Tensor, mask: Tensor) -> Tensor:
        """``mean ‖ε − ε̂(√ᾱ_t r0 + √(1−ᾱ_t) ε, t)‖²`` over the residues of ``mask`` (``t``, ``eps`` drawn by the
        caller, so a resumed run draws the same)."""
        ab = self.alpha_bar[t].unsqueeze(-1)
        pred = self(ab.sqrt() * r0 + (1 - ab).sqrt() * eps, t, zq, h)
        err = ((pred - eps) ** 2).mean(-1)
        return (err * mask).sum() / mask.sum().clamp_min(1)

    @torch.no_grad()
    def sample(self, zq: Tensor, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """r̂ ``(…, n_bits)`` by DDPM's ancestral sampling (σ_t² = β_t)."""
        x = torch.randn(zq.shape, generator=generator).to(zq.device)
        for step in reversed(range(self.steps)):
            t = torch.full(zq.shape[:-1], step, dtype=torch.long, device=zq.device)
            beta, ab = self.betas[step], self.alpha_bar[step]
            eps = self(x, t, zq, h)
            x = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
            if step:
                x = x + beta.sqrt() * torch.randn(zq.shape, generator=generator).to(zq.device)
        return x


class DPLM2(nn.Module, PyTorchModelHubMixin, library_name="hypalign", tags=["protein-lm", "protein-structure"]):
    """See the module docstring. ``esm_config``: the ``transformers.EsmConfig`` of the trunk (a dict);
    ``struct_head``: ``bit`` or ``index``."""

    def __init__(self, esm_config: dict[str, Any], n_bits: int = N_BITS, struct_head: str = "bit",
                 repa_dim: int = 0, resdiff_hidden: int = 0) -> None:
        super().__init__()
        from transformers import EsmConfig, EsmForMaskedLM

        if struct_head not in ("bit", "index"):
            raise ValueError(f"struct_head {struct_head!r}: expected bit or index")
        self.n_bits, self.struct_head_kind = n_bits, struct_head
        self.lm = EsmForMaskedLM(EsmConfig(**esm_config))
        d = self.lm.config.hidden_size
        self.type_emb = nn.Embedding(2, d)
        n_codes = 2**n_bits
        if struct_head == "index":
            self.struct_emb = nn.Embedding(STRUCT_OFFSET + n_codes, d, padding_idx=STRUCT_PAD)
        else:
            self.struct_special = nn.Embedding(STRUCT_OFFSET, d, padding_idx=STRUCT_PAD)
            self.struct_in = nn.Linear(n_bits, d)
        self.struct_out = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d),
                                        nn.Linear(d, n_codes if struct_head == "index" else n_bits))
        nn.init.normal_(self.type_emb.weight, std=0.02)
        self.repa_dim = repa_dim
        if repa_dim:  # REPA: a softmax mix over the embedding and every layer's output, then a 3-layer MLP
            self.repa_layer_logits = nn.Parameter(torch.zeros(self.lm.config.num_hidden_layers + 1))
            self.repa_proj = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d), nn.GELU(),
                                           nn.Linear(d, repa_dim))
        self.resdiff_hidden = resdiff_hidden
        if resdiff_hidden:  # its own softmax mix over the layers (of the structure half's states)
            self.resdiff_layer_logits = nn.Parameter(torch.zeros(self.lm.config.num_hidden_layers + 1))
            self.resdiff = ResDiff(d, n_bits, hidden=resdiff_hidden)

    @property
    def hidden_size(self) -> int:
        return int(self.lm.config.hidden_size)

    @property
    def max_residues(self) -> int:
        """The longest protein the rotary positions were sized for (``max_position_embeddings − 2``)."""
        return int(self.lm.config.max_position_embeddings) - 2

    def embed_structure(self, struct_ids: Tensor) -> Tensor:
        """``(B, P, d)`` embeddings of structure ids (specials below ``STRUCT_OFFSET``, codes above)."""
        if self.struct_head_kind == "index":
            return self.struct_emb(struct_ids)
        special = struct_ids < STRUCT_OFFSET
        bits = code_bits((struct_ids - STRUCT_OFFSET).clamp_min(0), self.n_bits).to(self.struct_in.weight.dtype)
        coded = self.struct_in(bits * 2 - 1)
        return torch.where(special.unsqueeze(-1), self.struct_special(struct_ids.clamp_max(STRUCT_OFFSET - 1)), coded)

    def hidden(self, struct_ids: Tensor, aa_ids: Tensor, attention_block: Tensor | None = None,
               all_layers: bool = False) -> Any:
        """Last hidden states ``(B, 2P, d)`` of the concatenated halves (``struct_ids``, ``aa_ids``: ``(B, P)``);
        with ``all_layers`` the tuple of the embedding's and every layer's output."""
        from hypalign.encoders.protein import PAD

        b, p = aa_ids.shape
        if struct_ids.shape != aa_ids.shape:
            raise ValueError(f"structure ids {tuple(struct_ids.shape)} and amino-acid ids {tuple(aa_ids.shape)} differ")
        emb = torch.cat([self.embed_structure(struct_ids) + self.type_emb.weight[0],
                         self.lm.esm.embeddings.word_embeddings(aa_ids) + self.type_emb.weight[1]], 1)
        valid = torch.cat([struct_ids != STRUCT_PAD, aa_ids != PAD], 1)  # (B, 2P)
        allowed = valid[:, None, :].expand(b, 2 * p, 2 * p)
        if attention_block is not None and bool(attention_block.any()):
            modality = torch.arange(2 * p, device=aa_ids.device) >= p
            same = modality[:, None] == modality[None, :]
            allowed = allowed & (same | ~attention_block.view(b, 1, 1))
        pos = torch.arange(p, device=aa_ids.device).repeat(2)[None].expand(b, 2 * p)
        out = self.lm.esm(inputs_embeds=emb, attention_mask=allowed[:, None], position_ids=pos,
                          output_hidden_states=all_layers)
        return out.hidden_states if all_layers else out.last_hidden_state

    def forward(self, struct_ids: Tensor, aa_ids: Tensor, attention_block: Tensor | None = None) -> dict[str, Tensor]:
        """``struct_logits`` ``(B, P, 8192)`` (index) or ``(B, P, 13)`` (bit: one logit per bit, ``p(bit=1)``),
        ``aa_logits`` ``(B, P, 33)``, ``hidden`` ``(B, 2P, d)``; with REPA also ``repa`` ``(B, P, repa_dim)``: the
        projection of the sequence half's states mixed over the layers (``Σ_l softmax(w)_l h_l``; spec §5.2.5)."""
        p = aa_ids.shape[1]
        out: dict[str, Tensor] = {}
        if self.repa_dim or self.resdiff_hidden:
            layers = self.hidden(struct_ids, aa_ids, attention_block, all_layers=True)
            h = layers[-1]
            if self.repa_dim:
                w = self.repa_layer_logits.softmax(0)
                out["repa"] = self.repa_proj(sum(w[i] * layer[:, p:] for i, layer in enumerate(layers)))
            if self.resdiff_hidden:  # ResDiff reads the states; it does not train them (the paper freezes the LM)
                w = self.resdiff_layer_logits.softmax(0)
                out["resdiff_cond"] = sum(w[i] * layer[:, :p].detach() for i, layer in enumerate(layers))
        else:
            h = self.hidden(struct_ids, aa_ids, attention_block)
        out.update({"struct_logits": self.struct_out(h[:, :p]), "aa_logits": self.lm.lm_head(h[:, p:]), "hidden": h})
        return out

    def sequence_model(self) -> Any:
        """The sequence half alone as a plain ``transformers.EsmForMaskedLM``: the trunk with the amino-acid
        modality embedding folded into its embedding table (``E'[a] = E[a] + type_emb[1]``) and ``token_dropout``
        off (the trunk never used it: it reads ``inputs_embeds``). On ``<cls> a_1 … a_L <eos>`` its states equal the
        amino-acid half's in the single-modality task (attention blocked across the halves, positions ``0…P−1``),
        so a frozen per-protein embedding of the sequence reads as DPLM-2's own (a copy; this model is unchanged)."""
        from transformers import EsmConfig, EsmForMaskedLM

        # the LM head keeps the unshifted table (DPLM-2 ties it to the embeddings): untied in the copy
        conf = EsmConfig(**{**self.lm.config.to_dict(), "token_dropout": False, "tie_word_embeddings": False})
        out = EsmForMaskedLM(conf)
        out.load_state_dict(self.lm.state_dict())
        with torch.no_grad():
            table = self.lm.esm.embeddings.word_embeddings.weight
            out.esm.embeddings.word_embeddings.weight.copy_(table + self.type_emb.weight[1])
            out.lm_head.decoder.weight.copy_(table)
        return out.eval()

    def load_trunk(self, state: dict[str, Tensor]) -> tuple[list[str], list[str]]:
        """Load an ``EsmForMaskedLM`` state dict (a protein-lm run, an ESM-2 directory) into the trunk, the amino-acid
        embeddings and head; returns ``(missing, unexpected)`` keys."""
        res = self.lm.load_state_dict(state, strict=False)
        return list(res.missing_keys), list(res.unexpected_keys)


__all__ = ["DPLM2", "N_BITS", "STANDARD_AA_IDS", "STRUCT_BOS", "STRUCT_EOS", "STRUCT_MASK", "STRUCT_OFFSET",
           "STRUCT_PAD", "TASKS", "ResDiff", "bits_code", "code_bits", "mask_pair", "timestep_embedding"]
