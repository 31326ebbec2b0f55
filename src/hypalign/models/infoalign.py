"""InfoAlign (Liu et al., ICLR 2025; spec §4.2): a molecule's graph encoder, a Gaussian information bottleneck and one
decoder per kind of context a random walk on the context graph reaches.

* encoder: :class:`~hypalign.encoders.molecule.GINVirtual` (5 layers, 300 dims, dropout 0.5, sum readout);
* bottleneck: ``SiLU → Linear(d, 2d)`` split into ``μ`` and ``σ = softplus(·) + 1e-7``: ``q(z|x) = N(μ, diag σ²)``;
  ``z = μ + σ ε`` is drawn for the minimality term; the decoders and every downstream use read ``μ`` (the
  representation, :meth:`InfoAlign.encode`);
* decoders: ``Linear(d, h)–BN–GELU–Dropout–Linear(h, out)`` (h = 1200), one per name of ``decoders`` (``{name:
  outputs}``): the molecule's fingerprint (Morgan r = 4, 1,024 bits), the nodes of each context type (one output per
  node: which ones the walks reach) and each numeric profile (its dimensions).

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
                 readout: str = "sum", decoder_hidden: int = 1200, decoder_dropout: float = 0.5) -> None:
        super().__init__()
        bad = [k for k in decoders if not k or "." in k]
        if bad:
            raise ValueError(f"decoder name {bad[0]!r}: a non-empty name without '.'")
        self.encoder = GINVirtual(layers, dim, dropout, readout)
        self.dist_net = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.decoders = nn.ModuleDict({k: decoder_mlp(dim, decoder_hidden, int(n), decoder_dropout)
                                       for k, n in decoders.items()})
        self.dim = dim

    def bottleneck(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(μ, σ)``, both ``(graphs, dim)``."""
        mu, raw = self.dist_net(self.encoder(batch)).chunk(2, dim=-1)
        return mu, nn.functional.softplus(raw) + 1e-7

    def encode(self, batch: Any) -> Tensor:
        """The molecule representation ``μ`` ``(graphs, dim)``."""
        return self.bottleneck(batch)[0]

    def forward(self, batch: Any) -> dict[str, Any]:
        """``{"mu", "sigma", "z", "decoded": {name: (graphs, outputs) logits of D(μ)}}``; ``z`` is a sample in training
        mode, ``μ`` in eval mode."""
        mu, sigma = self.bottleneck(batch)
        z = mu + sigma * torch.randn_like(sigma) if self.training else mu
        return {"mu": mu, "sigma": sigma, "z": z, "decoded": {k: d(mu) for k, d in self.decoders.items()}}
