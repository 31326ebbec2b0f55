"""The shared trainer: :class:`Trainer` runs a recipe's :class:`Task` under a :class:`TrainConfig`."""

from hypalign.device import model_device, resolve_device, to_device
from hypalign.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from hypalign.train.optim import RiemannianSGD, param_groups
from hypalign.train.schedule import LRSchedule
from hypalign.train.trainer import FitResult, Task, TrainConfig, Trainer, finish_run, seed_everything, shard_batches

__all__ = [
    "FitResult",
    "LRSchedule",
    "RiemannianSGD",
    "Task",
    "TrainConfig",
    "Trainer",
    "find_checkpoint",
    "finish_run",
    "load_checkpoint",
    "model_device",
    "param_groups",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "shard_batches",
    "to_device",
]
