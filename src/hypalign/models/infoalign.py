"""InfoAlign (Liu et al., ICLR 2025; spec §4.2): a molecule's graph encoder, a Gaussian information bottleneck and one
decoder per kind of context a random walk on the context graph reaches.

* encoder: :class:`~hypalign.encoders.molecule.GINVirtual` (5 layers, 300 dims, dropout 0.5, sum readout);
* bottleneck: ``SiLU → Linear(d, 2d)`` split into ``μ`` and ``σ = softplus(·) + 1e-7``: ``q(z|x) = N(μ, diag σ²)``;
  ``z = μ + σ ε`` is drawn for the minimality term; the decoders and every downstream use read ``μ`` (the
  representation, :meth:`InfoAlign.encode`);
* decoders: ``Linear(d, h)–BN–GELU–Dropout–Linear(h, out)`` (h = 1200), one per name of ``decoders`` (``{name:
  outputs}``): the molecule's fingerprint (Morgan r = 4, 1,024 bits), the nodes of each context type (one output per
  node: which ones the walks reach) and each numeric profile (its dimensions).

* alignment head (optional, ``align_dim > 0``; the ``contrast`` and ``entail`` objectives): the molecule's ``μ``
  through ``LayerNorm(d)`` and ``Linear(d, e)`` and a learned table of the ``n_context`` context nodes (``e`` wide),
  each scaled by a learnable ``exp(α) ≤ 1`` and lifted by ``expmap0`` into ``align_geometry`` — the Lorentz model
  (curvature −1, MERU's lift; entailment cones available) or the unit sphere (CLOOME's normalised space) — where the
  molecule is aligned contrastively with the context its walk reached, and a reached context node's cone contains it.
  The layer norm matters: ``μ`` of the sum-readout GIN has norms of 10³–10⁴ after pre-training (nothing bounds it; the
  decoders start with batch norm), and without it every molecule was lifted to the ``expmap0`` clamp (distance 11.09
  from the origin), a sphere in all but name (``α`` cannot shrink by 10³ at this learning rate); with it the head is
  invariant to ``μ``'s scale and starts at radius ~0.6 (MERU's image features come out of a layer norm too).

``save_pretrained`` / ``from_pretrained`` (``PyTorchModelHubMixin``): ``config.json`` holds the constructor
arguments (decoder sizes included), ``model.safetensors`` the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from hypalign.encoders.molecule import GINVirtual


def decoder_name(kind: str, name: str) -> str:
    """A decoder's key: ``type_<T>`` / ``profile_<P>`` with ``.`` replaced (module names cannot hold one)."""
    return f"{kind}_{name.replace('.', '_')}"


def decoder_mlp(dim: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out))


class InfoAlign(nn.Module, PyTorchModelHubMixin, library_name="hypalign", tags=["molecules", "infoalign"]):
    def __init__(self, decoders: dict[str, int], layers: int = 5, dim: int = 300, dropout: float = 0.5,
                 readout: str = "sum", decoder_hidden: int = 1200, decoder_dropout: float = 0.5,
                 align_dim: int = 0, n_context: int = 0, align_geometry: str = "lorentz") -> None:
        super().__init__()
        bad = [k for k in decoders if not k or "." in k]
        if bad:
            raise ValueError(f"decoder name {bad[0]!r}: a non-empty name without '.'")
        self.encoder = GINVirtual(layers, dim, dropout, readout)
        self.dist_net = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.decoders = nn.ModuleDict({k: decoder_mlp(dim, decoder_hidden, int(n), decoder_dropout)
                                       for k, n in decoders.items()})
        self.dim = dim
        self.align_dim = align_dim
        if align_dim:
            import math

            from hypalign.geometry import get_geometry

            if align_geometry not in ("lorentz", "sphere"):
                raise ValueError(f"align_geometry {align_geometry!r}: expected lorentz or sphere")
            if n_context < 1:
                raise ValueError("an alignment head needs n_context >= 1 context nodes")
            self.geometry = get_geometry(align_geometry, c=1.0)
            self.align_norm = nn.LayerNorm(dim)
            self.align_proj = nn.Linear(dim, align_dim)
            self.context_emb = nn.Embedding(n_context, align_dim)
            nn.init.normal_(self.context_emb.weight, std=1.0)
            self.mol_alpha = nn.Parameter(torch.tensor(-0.5 * math.log(align_dim)))
            self.context_alpha = nn.Parameter(torch.tensor(-0.5 * math.log(align_dim)))
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def bottleneck(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(μ, σ)``, both ``(graphs, dim)``."""
        mu, raw = self.dist_net(self.encoder(batch)).chunk(2, dim=-1)
        return mu, nn.functional.softplus(raw) + 1e-7

    def encode(self, batch: Any) -> Tensor:
        """The molecule representation ``μ`` ``(graphs, dim)``."""
        return self.bottleneck(batch)[0]

    def _lift(self, u: Tensor, alpha: Tensor) -> Tensor:
        """``expmap0(exp(min(α, 0)) u)`` in the alignment geometry (normalised on the sphere)."""
        return self.geometry.expmap0(u.float() * alpha.clamp(max=0).exp())

    def align_molecules(self, mu: Tensor) -> Tensor:
        """``(B, e)`` molecules in the alignment space (Lorentz space components, or unit vectors)."""
        return self._lift(self.align_proj(self.align_norm(mu)), self.mol_alpha)

    def align_context(self, rows: Tensor) -> Tensor:
        """``(N, e)`` context nodes (rows of the context table; ``-1`` read as row 0) in the alignment space."""
        return self._lift(self.context_emb(rows.clamp_min(0)), self.context_alpha)

    def forward(self, batch: Any, context: Tensor | None = None) -> dict[str, Any]:
        """``{"mu", "sigma", "z", "decoded": {name: (graphs, outputs) logits of D(μ)}}``; ``z`` is a sample in training
        mode, ``μ`` in eval mode. With an alignment head and ``context`` (``(graphs,)`` context rows, -1 for none) also
        ``align_mol`` and ``align_ctx``: the molecules and those nodes in the alignment space."""
        mu, sigma = self.bottleneck(batch)
        z = mu + sigma * torch.randn_like(sigma) if self.training else mu
        out = {"mu": mu, "sigma": sigma, "z": z, "decoded": {k: d(mu) for k, d in self.decoders.items()}}
        if self.align_dim and context is not None:
            out["align_mol"], out["align_ctx"] = self.align_molecules(mu), self.align_context(context)
        return out
