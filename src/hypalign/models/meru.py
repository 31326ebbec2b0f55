"""MERU (Desai et al., ICML 2023, "Hyperbolic Image-Text Representations") and its CLIP baseline on two towers.

``ImageText(kind="meru")``: an image and a text embedding in the Lorentz model (space components, curvature ``-c``)::

    image = expmap0(exp(visual_alpha) * visual_proj(f_img(x)))
    text = expmap0(exp(textual_alpha) * textual_proj(standardise(f_txt(t))))

* ``f_img``: a ViT from its config (``transformers`` ``ViTModel``, the [CLS] feature; the CPU default is small and
  trained from scratch on 64 px images with 8 px patches) or any local Hugging Face vision model;
* ``f_txt``: a sentence encoder's pooled feature — frozen and cached (the default: the MiniLM that ships offline),
  or with its top ``text_tune`` layers part of the model (:class:`~hypalign.encoders.text_layers.TunedTextLayers`);
* the text feature is standardised (a LayerNorm without parameters, eps 1e-12: scale-free) before its
  projection: MERU's text transformer ends in a LayerNorm (unit variance per coordinate, like the ViT's), whereas a
  sentence encoder's pooled feature is L2-normalised (MiniLM: norm 1, i.e. ``1/sqrt(384)`` per coordinate) or of any
  scale (a user's model) — unstandardised, the text would start ``sqrt(text_dim)`` times nearer the origin than the
  images, and the distances' spread (hence the contrastive logits) would come almost from the images alone;
* ``visual_proj``/``textual_proj``: ``Linear(width, embed_dim, bias=False)``, init std ``width^-1/2`` (spec §2.1);
* ``visual_alpha``/``textual_alpha``: learnable log-scales initialised to ``log(1/sqrt(embed_dim))`` and clamped to
  ``<= 0`` on every forward (so the scale is at most 1);
* the curvature: a learnable ``log c`` clamped to ``[log(c0/10), log(10 c0)]`` (:class:`~hypalign.geometry.Lorentz`
  with ``learnable=True``); ``logit_scale``: learnable ``log(1/0.07)``, clamped at ``log 100`` by the loss.

``ImageText(kind="clip")``: the same towers and projections, L2-normalised onto the unit sphere (cosine logits), no
alphas and no curvature. The lift runs in float32 (autocast off), as MERU's does.

Class embeddings for zero-shot classification (:meth:`class_embeddings`): MERU averages the prompts' projected
features in the tangent space, then scales by ``exp(textual_alpha)`` and maps with ``expmap0``; CLIP normalises,
averages and normalises again (spec §2.5).

``save_pretrained``/``from_pretrained`` (``huggingface_hub``'s mixin): the constructor arguments (the vision and
text architecture configs included, so nothing but the run directory is needed) and ``model.safetensors``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from hypalign.encoders.text_layers import TunedTextLayers
from hypalign.encoders.vision import HFVisionEncoder
from hypalign.geometry import Lorentz, Manifold, Sphere

KINDS = ("meru", "clip")


def small_vit_config(image_size: int = 64, patch_size: int = 8, width: int = 192, depth: int = 6,
                     heads: int = 3) -> dict[str, Any]:
    """A ``transformers`` ``ViTConfig`` dict for a small ViT trained from scratch (the CPU default: 64 px, 8 px
    patches, 64 tokens + [CLS], width 192, 6 blocks, 3 heads: ViT-Tiny's shape at half its depth)."""
    if image_size % patch_size:
        raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
    return {"model_type": "vit", "image_size": image_size, "patch_size": patch_size, "hidden_size": width,
            "num_hidden_layers": depth, "num_attention_heads": heads, "intermediate_size": 4 * width,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "qkv_bias": True,
            "layer_norm_eps": 1e-5}


class ImageText(nn.Module, PyTorchModelHubMixin, library_name="hypalign", tags=["hyperbolic", "meru", "clip"]):
    """See the module docstring. ``forward(batch)`` reads ``batch["pixels"]`` (``(B, 3, H, W)``, normalised) and
    ``batch["text_features"]`` (``(T, text_dim)``, frozen tower) or ``batch["text_tokens"]``/``batch["text_lengths"]``
    (tuned tower, packed), plus ``batch["parent_features"]``/``parent_tokens`` when the tree objective is on;
    returns ``{"image": (B, D), "text": (T, D)[, "parent": (P, D)]}`` on :attr:`geometry`."""

    def __init__(self, kind: str = "meru", embed_dim: int = 128, image_config: dict[str, Any] | None = None,
                 image_path: str | None = None, text_dim: int = 384, text_config: dict[str, Any] | None = None,
                 text_tune: int = 0, c: float = 1.0, learn_c: bool = True) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
        if image_config is None and image_path is None:
            image_config = small_vit_config()
        self.image_encoder = HFVisionEncoder(path=image_path if image_config is None else None, config=image_config,
                                             freeze=None)
        image_config = self.image_encoder.config_dict
        if isinstance(self._hub_mixin_config, dict):  # from_pretrained rebuilds from the config: no original dir
            self._hub_mixin_config.update(image_config=image_config, image_path=None)
        if text_tune and text_config is None:
            raise ValueError("a tuned text tower needs the text encoder's config")
        self.text_layers = TunedTextLayers(text_config, text_tune) if text_tune and text_config else None
        width = self.image_encoder.out_dim
        self.visual_proj = nn.Linear(width, embed_dim, bias=False)
        self.textual_proj = nn.Linear(text_dim, embed_dim, bias=False)
        nn.init.normal_(self.visual_proj.weight, std=width**-0.5)
        nn.init.normal_(self.textual_proj.weight, std=text_dim**-0.5)
        self.kind, self.embed_dim, self.image_size = kind, embed_dim, int(image_config.get("image_size", 224))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.geometry: Manifold
        if kind == "meru":
            self.visual_alpha = nn.Parameter(torch.tensor(math.log(embed_dim**-0.5)))
            self.textual_alpha = nn.Parameter(torch.tensor(math.log(embed_dim**-0.5)))
            self.geometry = Lorentz(c, learnable=learn_c)
        else:
            self.geometry = Sphere()

    # -- towers ---------------------------------------------------------------------------------------------------
    def _lift(self, u: Tensor, alpha: Tensor | None) -> Tensor:
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = u.float()
            if self.kind == "clip":
                return nn.functional.normalize(u, dim=-1)
            assert alpha is not None
            return self.geometry.expmap0(u * alpha.clamp(max=0.0).exp())

    def image_features(self, pixels: Tensor) -> Tensor:
        """The image tower's feature before the projection, ``(B, width)``."""
        return self.image_encoder(pixels)

    def encode_image(self, pixels: Tensor) -> Tensor:
        """Image embeddings ``(B, embed_dim)`` on :attr:`geometry` (Lorentz space components, or unit vectors)."""
        return self._lift(self.visual_proj(self.image_features(pixels)),
                          self.visual_alpha if self.kind == "meru" else None)

    def text_features(self, features: Tensor | None = None, tokens: Tensor | None = None,
                      lengths: Tensor | None = None) -> Tensor:
        """The text tower's pooled feature: the frozen features as given, or the tuned layers over packed states."""
        if self.text_layers is not None:
            if tokens is None or lengths is None:
                raise ValueError("a tuned text tower reads token states (tokens, lengths)")
            return self.text_layers.forward_packed(tokens, lengths)
        if features is None:
            raise ValueError("a frozen text tower reads text features")
        return features.float()

    def encode_text(self, features: Tensor | None = None, tokens: Tensor | None = None,
                    lengths: Tensor | None = None) -> Tensor:
        """Text embeddings ``(T, embed_dim)`` on :attr:`geometry`."""
        return self.embed_text_features(self.text_features(features, tokens, lengths))

    def embed_text_features(self, pooled: Tensor) -> Tensor:
        """Text embeddings from the tower's pooled features (frozen, or already through the tuned layers)."""
        return self._lift(self.project_text(pooled), self.textual_alpha if self.kind == "meru" else None)

    def project_text(self, pooled: Tensor) -> Tensor:
        """``textual_proj(standardise(pooled))``: the projected text feature before the lift, ``(T, embed_dim)``."""
        pooled = pooled.float()
        return self.textual_proj(nn.functional.layer_norm(pooled, pooled.shape[-1:], eps=1e-12))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {"image": self.encode_image(batch["pixels"]),
               "text": self.encode_text(batch.get("text_features"), batch.get("text_tokens"),
                                        batch.get("text_lengths"))}
        if "parent_features" in batch or "parent_tokens" in batch:
            out["parent"] = self.encode_text(batch.get("parent_features"), batch.get("parent_tokens"),
                                             batch.get("parent_lengths"))
        return out

    # -- zero-shot classes ----------------------------------------------------------------------------------------
    def class_embeddings(self, prompt_features: Tensor, prompt_class: Tensor, n_classes: int) -> Tensor:
        """One embedding per class from its prompts' text features (``(P, text_dim)``, pooled: frozen or already
        through the tuned layers) and their class index ``(P,)``: MERU — the mean of the projected features (the
        tangent space) scaled by ``exp(textual_alpha)`` and lifted; CLIP — normalise, average, normalise."""
        u = self.project_text(prompt_features)
        counts = torch.bincount(prompt_class, minlength=n_classes).clamp_min(1).unsqueeze(1).to(u.dtype)
        if self.kind == "clip":
            u = nn.functional.normalize(u, dim=-1)
        mean = torch.zeros(n_classes, u.shape[1], dtype=u.dtype, device=u.device).index_add_(0, prompt_class, u)
        return self._lift(mean / counts, self.textual_alpha if self.kind == "meru" else None)

    def scores(self, images: Tensor, classes: Tensor) -> Tensor:
        """``(images, classes)`` zero-shot scores: the Lorentzian inner product (MERU; monotone in ``-d``) or the
        cosine (CLIP)."""
        if self.kind == "clip":
            return images.float() @ classes.float().T
        geo: Lorentz = self.geometry  # type: ignore[assignment]
        xt, yt = geo.time(images.float()), geo.time(classes.float())
        return images.float() @ classes.float().T - xt[:, None] * yt[None, :]

    @property
    def curvature(self) -> float:
        return float(self.geometry.c.detach()) if self.kind == "meru" else 0.0  # type: ignore[attr-defined]

    def scalars(self) -> dict[str, float]:
        """What ``metrics.jsonl`` follows over training: curvature, the alphas, the logit scale."""
        out = {"logit_scale": float(self.logit_scale.detach().clamp(max=math.log(100)).exp())}
        if self.kind == "meru":
            out.update(curvature=self.curvature, visual_alpha=float(self.visual_alpha.detach().clamp(max=0).exp()),
                       textual_alpha=float(self.textual_alpha.detach().clamp(max=0).exp()))
        return out
