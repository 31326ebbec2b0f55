"""Where tensors live: choosing the device, moving batches, and the model's device.

The convention every recipe follows: the trainer puts the model on its device
(:func:`resolve_device`); a task's ``evaluate`` and the recipes' embedding functions receive the model
wherever it is, move their inputs to :func:`model_device` and hand results back on the CPU.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from hypalign.errors import InputError


def resolve_device(name: str) -> torch.device:
    """``auto``: ``cuda:LOCAL_RANK`` when CUDA is available (one process per GPU under torchrun), else ``cpu``;
    otherwise the named device (``cpu``, ``cuda``, ``cuda:1``, ``mps``...). Errors name what is missing."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local, n = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= n:
            raise InputError(f"this process has LOCAL_RANK={local} but only {n} CUDA device(s) are visible: "
                             f"start at most {n} processes per node, or pass --device cpu")
        return torch.device("cuda", local)
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is visible to torch {torch.__version__}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or dicts / lists / tuples of them) on ``device``; other values as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); ``cpu`` for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
