"""Multi-process data parallelism under ``torchrun``: set-up, rank helpers, gathering with gradient.

``torchrun --nproc-per-node 2 -m hypalign ...`` sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``; the
trainer then joins the process group (``gloo`` on CPU, ``nccl`` on CUDA), wraps the model in
DistributedDataParallel and lets only rank 0 write files and draw progress bars.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env(backend: str | None = None, device: str | torch.device = "auto") -> bool:
    """Join the process group described by torchrun's environment; False when not launched by it.
    ``backend``: default ``nccl`` when the training ``device`` (:func:`hypalign.device.resolve_device`)
    is a CUDA device, else ``gloo``."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        from hypalign.device import resolve_device

        dev = device if isinstance(device, torch.device) else resolve_device(device)
        backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank (rank order) along dim 0, keeping the autograd graph.

    Gradients flowing into another rank's slice are sent back to it and summed, so a loss over the
    gathered batch, averaged by DDP, has exactly the gradient of the same loss computed on one
    process over the whole batch. Needs equal sizes.
    """
    if not is_distributed():
        return x
    return _AllGatherWithGrad.apply(x)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: all_gather. Backward: sum every rank's gradient of the gathered tensor
    (all_reduce) and keep this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.n, ctx.rank = x.shape[0], rank()
        out = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x)
    return torch.cat(out, dim=0)
