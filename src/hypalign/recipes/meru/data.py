"""MERU's data helpers shared by its task and its evaluation: images in memory, the model's input range, and texts
through the text tower's frozen part (:class:`TextBank`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign.data.imagetext import load_image
from hypalign.models.meru import ImageText
from hypalign.recipes.meru.config import MERUConfig


def load_pixels(paths: Sequence[Path], size: int) -> torch.Tensor:
    """The images at ``paths`` as ``uint8`` ``(N, 3, size, size)`` (:func:`~hypalign.data.imagetext.load_image`)."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, p in enumerate(paths):
        out[i] = torch.from_numpy(load_image(p, size)).permute(2, 0, 1)
    return out


def to_input(pixels_u8: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels to the model's input range ``[-1, 1]`` (mean = std = 0.5, as ViTs trained from scratch)."""
    return pixels_u8.float().div_(255.0).sub_(0.5).div_(0.5)


class TextBank:
    """Texts through the text tower's frozen part, once: pooled features (frozen tower) or token states (tuned)."""

    def __init__(self, texts: Sequence[str], cfg: MERUConfig, say: Callable[[str], None] | None = None) -> None:
        from hypalign.encoders.text import encode_cached, minilm_path, token_states_cached

        self.texts = list(texts)
        self.path = cfg.text_path or str(minilm_path())
        self.tuned = cfg.text_tune > 0
        if self.tuned:
            self.states, self.offsets = token_states_cached(self.texts, self.path, cfg.text_tune, say=say)
        else:
            self.features = torch.from_numpy(np.asarray(encode_cached(self.texts, self.path, say=say), np.float32))

    def text_config(self) -> dict[str, Any] | None:
        if not self.tuned:
            return None
        from transformers import AutoConfig

        return json.loads(AutoConfig.from_pretrained(self.path, local_files_only=True).to_json_string())

    @property
    def dim(self) -> int:
        return int(self.states.shape[1] if self.tuned else self.features.shape[1])

    def inputs(self, rows: np.ndarray, prefix: str) -> dict[str, torch.Tensor]:
        """Model inputs for texts ``rows``: ``{prefix}_features`` or ``{prefix}_tokens`` + ``{prefix}_lengths``."""
        if self.tuned:
            from hypalign.encoders.text import gather_token_states

            tokens, lengths = gather_token_states(self.states, self.offsets, rows)
            return {f"{prefix}_tokens": tokens, f"{prefix}_lengths": lengths}
        return {f"{prefix}_features": self.features[torch.as_tensor(rows, dtype=torch.long)]}

    def pooled(self, model: ImageText, rows: np.ndarray | None = None) -> torch.Tensor:
        """The tower's pooled features of ``rows`` (all texts by default) as the model sees them now."""
        rows = np.arange(len(self.texts)) if rows is None else np.asarray(rows)
        if not self.tuned:
            return self.features[torch.as_tensor(rows, dtype=torch.long)]
        from hypalign.encoders.text import gather_token_states

        out = []
        for s in range(0, len(rows), 1024):
            tokens, lengths = gather_token_states(self.states, self.offsets, rows[s : s + 1024])
            out.append(model.text_features(tokens=tokens, lengths=lengths))
        return torch.cat(out) if out else torch.zeros(0, self.dim)
