"""The tuned part of a text tower: the top layers of a BERT-like sentence encoder over cached frozen token states
(ProtCLIP's GO-term texts, MERU's captions; :func:`hypalign.encoders.text.token_states_cached`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class TunedTextLayers(nn.Module):
    """The top ``n_layers`` transformer layers of a BERT-like sentence encoder, trainable ("tuned" text tower),
    finishing the frozen lower layers' token states (:func:`~hypalign.encoders.text.token_states_cached`):
    ``pooled = normalize(mean over real tokens of layers(states))`` — with the pretrained weights
    (:meth:`load_pretrained_layers`) exactly the frozen sentence embedding, so tuning starts from it.

    Built from the encoder's config (``config``: its ``to_dict()``) so that ``from_pretrained`` needs no
    original directory; layer ``i`` here is layer ``L - n_layers + i`` there."""

    def __init__(self, config: dict[str, Any], n_layers: int) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        rest = {k: v for k, v in config.items() if k != "model_type"}
        cfg = AutoConfig.for_model(config["model_type"], **{**rest, "num_hidden_layers": n_layers})
        base = AutoModel.from_config(cfg)
        layers = getattr(getattr(base, "encoder", None), "layer", None)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"text tuning needs a BERT-like encoder (encoder.layer); got {type(base).__name__}")
        self.layers = layers
        self.n_layers = n_layers

    def load_pretrained_layers(self, path: str) -> None:
        """Copy the top ``n_layers`` layers' weights from the local encoder directory ``path``."""
        from transformers import AutoModel

        from hypalign.encoders import quiet_loading

        with quiet_loading():
            src = AutoModel.from_pretrained(path, local_files_only=True).encoder.layer
        for mine, theirs in zip(self.layers, list(src)[len(src) - self.n_layers :], strict=True):
            mine.load_state_dict(theirs.state_dict())

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """Pooled features of padded token states ``(texts, tokens, hidden)`` with ``mask`` marking real tokens."""
        h = states.float()
        # additive attention mask (batch, 1, 1, tokens): eager and SDPA attention both add it to the scores
        ext = (~mask)[:, None, None, :].to(h.dtype) * torch.finfo(h.dtype).min
        for layer in self.layers:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).to(h.dtype)
        return nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)

    def forward_packed(self, tokens: Tensor, lengths: Tensor, chunk: int = 256) -> Tensor:
        """Pooled features of texts given packed: ``tokens`` ``(sum of lengths, hidden)`` the texts' real-token
        states one after another (:func:`~hypalign.encoders.text.gather_token_states`), ``lengths`` each
        text's count. Texts run in chunks of ``chunk`` of similar length, each padded only to its own longest:
        GO term names are 12 tokens on average and up to 64, so padding a step's few thousand names to the
        longest made ~4-5x the work. Padding never changes a text's output (masked attention, masked mean), so
        the result is :meth:`forward` of each text alone, in the input order."""
        if len(lengths) == 0:
            return tokens.new_zeros((0, tokens.shape[-1]), dtype=torch.float32)
        lengths = lengths.to(tokens.device)
        starts = torch.cumsum(lengths, 0) - lengths
        order = torch.argsort(lengths, stable=True)
        parts = []
        for s in range(0, len(order), chunk):
            idx = order[s : s + chunk]
            n = lengths[idx]
            pos = torch.arange(int(n.max().clamp_min(1)), device=tokens.device)
            mask = pos[None, :] < n[:, None]
            where = (starts[idx][:, None] + pos[None, :]).clamp_max(max(len(tokens) - 1, 0))
            x = tokens[where].float() * mask[..., None]
            parts.append(self(x, mask))
        out = torch.cat(parts)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return out[inverse]
