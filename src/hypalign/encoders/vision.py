"""Image encoders: a small CNN trained from scratch (the CPU default) and ViT / DeiT / DINO through
``transformers`` loaded from a local Hugging Face directory.

* :class:`SmallCNN`: four conv–BN–ReLU blocks (32→64→128→256 channels, stride-2 pooling) and global
  average pooling; ``out_dim = 256``.
* :class:`HFVisionEncoder`: any ``transformers`` vision backbone with a ``[CLS]`` token (``ViTModel``
  for ViT-S/DINO, ``DeiTModel``); the feature is the final ``[CLS]`` hidden state (``out_dim =
  hidden_size``, 384 for the small models). ``freeze=k`` freezes the patch embedding (and
  position embeddings and dropout, Hyp-ViT's ``freeze=0``) plus the first ``k`` blocks.
  Weights come from ``from_pretrained(local_dir)`` — nothing is downloaded — or, for a saved
  hypalign model, from the architecture config alone (weights are then loaded from the model).
"""

from __future__ import annotations

import itertools
from typing import Any

from torch import Tensor, nn


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(chans):
            layers += [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*layers)
        self.out_dim = chans[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).mean(dim=(2, 3))


class HFVisionEncoder(nn.Module):
    """A ``transformers`` vision backbone returning the ``[CLS]`` feature."""

    def __init__(self, path: str | None = None, config: dict[str, Any] | None = None, freeze: int | None = 0) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        from hypalign.encoders import quiet_loading
        from hypalign.errors import InputError

        if path is not None:
            try:
                with quiet_loading():
                    self.backbone = AutoModel.from_pretrained(path, add_pooling_layer=False)
            except OSError as exc:
                raise InputError(f"{path}: not a local Hugging Face model directory ({exc})") from None
            except TypeError:
                with quiet_loading():
                    self.backbone = AutoModel.from_pretrained(path)
        elif config is not None:
            cfg = AutoConfig.for_model(**config)
            try:
                self.backbone = AutoModel.from_config(cfg, add_pooling_layer=False)
            except TypeError:
                self.backbone = AutoModel.from_config(cfg)
        else:
            raise ValueError("HFVisionEncoder needs a local directory or a config")
        self.out_dim = int(self.backbone.config.hidden_size)
        if freeze is not None and freeze >= 0:
            self.freeze(freeze)

    @property
    def config_dict(self) -> dict[str, Any]:
        return self.backbone.config.to_dict()

    def freeze(self, k: int) -> None:
        """Freeze the embeddings (patch + position) and the first ``k`` transformer blocks."""
        emb = getattr(self.backbone, "embeddings", None)
        if emb is not None:
            for p in emb.parameters():
                p.requires_grad_(False)
        for block in self.blocks()[:k]:
            for p in block.parameters():
                p.requires_grad_(False)

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks in order (``layers`` in transformers 5, ``encoder.layer`` before)."""
        for path in ("layers", "encoder.layer", "encoder.layers"):
            obj: object = self.backbone
            for part in path.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, nn.ModuleList):
                return list(obj)
        return []

    def forward(self, x: Tensor) -> Tensor:
        out = self.backbone(pixel_values=x)
        return out.last_hidden_state[:, 0]
