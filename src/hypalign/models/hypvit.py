"""Hyp-ViT (Ermolov et al. 2022): an image encoder, a linear head, and the map onto the manifold.

``embedding = last(W f(x) + b)`` with

* ``f``: :class:`hypalign.encoders.vision.SmallCNN` (CPU default) or a ``transformers`` ViT/DeiT/DINO;
* ``W``: ``Linear(out_dim, emb_dim)``, (semi-)orthogonal init, zero bias (spec §1.1);
* ``last``: hyperbolic — feature clipping ``x·min(1, r/(|x|+1e-5))`` then
  :meth:`hypalign.geometry.PoincareBall.expmap0` with curvature ``-c`` (geoopt convention
  ``tanh(sqrt(c)|u|) u/(sqrt(c)|u|)``, fixed c); spherical — L2 normalisation.

``save_pretrained(dir)`` / ``from_pretrained(dir)`` come from ``huggingface_hub``'s
``PyTorchModelHubMixin``: ``config.json`` (the constructor arguments, including the backbone's
architecture config, so no original weights are needed) and ``model.safetensors``.
"""

from __future__ import annotations

from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from hypalign.encoders.vision import HFVisionEncoder, SmallCNN
from hypalign.geometry import Manifold, feature_clip, get_geometry


class HypViT(nn.Module, PyTorchModelHubMixin, library_name="hypalign", tags=["hyperbolic", "metric-learning"]):
    def __init__(
        self,
        encoder: str = "cnn",
        encoder_path: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        freeze: int | None = 0,
        emb_dim: int = 128,
        geometry: str = "poincare",
        c: float = 0.1,
        clip_r: float | None = 2.3,
        cnn_width: int = 32,
    ) -> None:
        super().__init__()
        if geometry not in ("poincare", "sphere"):
            raise ValueError(f"geometry {geometry!r}: expected poincare or sphere")
        if encoder == "cnn":
            self.encoder: nn.Module = SmallCNN(width=cnn_width)
        elif encoder == "hf":
            enc = HFVisionEncoder(path=encoder_path if encoder_config is None else None, config=encoder_config,
                                  freeze=freeze)
            encoder_config = enc.config_dict  # saved with the model: from_pretrained needs no original dir
            self.encoder = enc
            if isinstance(self._hub_mixin_config, dict):
                self._hub_mixin_config.update(encoder_config=encoder_config, encoder_path=None)
        else:
            raise ValueError(f"encoder {encoder!r}: expected cnn or hf")
        self.hparams = {"encoder": encoder, "encoder_config": encoder_config, "freeze": freeze, "emb_dim": emb_dim,
                        "geometry": geometry, "c": c, "clip_r": clip_r, "cnn_width": cnn_width}
        self.head = nn.Linear(self.encoder.out_dim, emb_dim)  # type: ignore[arg-type]
        nn.init.orthogonal_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.geometry_name, self.c, self.clip_r = geometry, float(c), clip_r
        if geometry not in ("poincare", "sphere"):
            raise ValueError(f"geometry {geometry!r}: expected poincare or sphere")
        self._geometry: Manifold = get_geometry(geometry, c=c)

    @property
    def geometry(self) -> Manifold:
        return self._geometry

    def features(self, images: Tensor) -> Tensor:
        """The encoder's feature (before the head): what Hyp-ViT's δ table is computed on."""
        return self.encoder(images)

    def forward(self, images: Tensor) -> Tensor:
        u = self.head(self.features(images))
        if self.geometry_name == "sphere":
            return nn.functional.normalize(u, dim=-1)
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = u.float()
            if self.clip_r is not None:
                u = feature_clip(u, self.clip_r)
            return self._geometry.expmap0(u)

    @torch.no_grad()
    def encode(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Embeddings of ``images`` (``(n, 3, H, W)``, normalised), in eval mode, batched."""
        was = self.training
        self.eval()
        out = [self(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.head.out_features)
