"""A tiny regression task for trainer tests; run as a script to train in a subprocess.

``python tests/toy_task.py RUN_DIR [--resume] [--sleep S] [--steps-per-save N]``
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn

from hypalign.train import Task, TrainConfig, Trainer, model_device


class ToyTask(Task):
    """y = X w* + noise; an MLP with dropout (so the RNG state matters) fits it."""

    def __init__(self, n: int = 256, batch: int = 16, sleep: float = 0.0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
        self.batch, self.sleep = batch, sleep
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))

    def batches(self, epoch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(1000 + epoch)
        return list(torch.randperm(len(self.x), generator=g).split(self.batch))

    def iterate(self, specs: Any) -> Any:
        return ((self.x[i], self.y[i]) for i in specs)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if self.sleep:
            time.sleep(self.sleep)
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        dev = model_device(model)  # the trainer hands the model over on its device
        return {"mse": float(((model(self.x.to(dev)) - self.y.to(dev)) ** 2).mean())}


def config(run_dir: str, **kw: Any) -> TrainConfig:
    base = dict(run_dir=run_dir, epochs=4, lr=1e-2, warmup_steps=5, grad_clip=1.0, progress=False, log_every=4,
                best_metric="mse", best_mode="min", threads=1)
    base.update(kw)
    return TrainConfig(**base)


if __name__ == "__main__":
    run_dir = sys.argv[1]
    resume = "--resume" in sys.argv
    sleep = float(sys.argv[sys.argv.index("--sleep") + 1]) if "--sleep" in sys.argv else 0.0
    save_every = int(sys.argv[sys.argv.index("--steps-per-save") + 1]) if "--steps-per-save" in sys.argv else 0
    Trainer(ToyTask(sleep=sleep), config(run_dir, resume=resume, save_every=save_every)).fit()
