"""The one batched inference path every model's ``embed`` / ``encode`` goes through.

:func:`encode_batched` runs a model function over items in batches, in eval mode and without gradients, optionally
ordering the items by a key first (sequences of similar length share a batch: less padding), and returns float32 CPU
tensors in the input order. A recipe supplies only ``fn(batch of items) -> tensor or tuple of tensors``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

T = TypeVar("T")


@torch.no_grad()
def encode_batched(fn: Callable[[list[T]], Tensor | tuple[Tensor, ...]], items: Sequence[T], batch_size: int = 64,
                   sort_key: Callable[[T], Any] | None = None, model: nn.Module | None = None) -> tuple[Tensor, ...]:
    """``fn`` over ``items`` in batches of ``batch_size`` (sorted by ``sort_key`` when given, stable); ``model`` is put
    in eval mode for the call and restored. Returns one ``(len(items), ...)`` float32 CPU tensor per output of
    ``fn`` (a single tensor counts as one output), rows in the order of ``items``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(items) == 0:
        raise ValueError("no items to encode")
    was = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        order = (np.argsort([sort_key(x) for x in items], kind="stable") if sort_key is not None
                 else np.arange(len(items)))
        parts: list[list[Tensor]] = []
        for s in range(0, len(items), batch_size):
            out = fn([items[i] for i in order[s : s + batch_size]])
            outs = out if isinstance(out, tuple) else (out,)
            if not parts:
                parts = [[] for _ in outs]
            for acc, o in zip(parts, outs, strict=True):
                acc.append(o.detach().float().cpu())
    finally:
        if model is not None:
            model.train(was)
    pos = torch.from_numpy(np.asarray(order, dtype=np.int64))
    result = []
    for acc in parts:
        cat = torch.cat(acc)
        if sort_key is None:
            result.append(cat)
            continue
        full = torch.empty_like(cat)
        full[pos] = cat
        result.append(full)
    return tuple(result)
