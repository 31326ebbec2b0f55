"""Learning-rate schedules: linear warmup, optional burn-in, then cosine or constant.

``lr(step) = base_lr * multiplier(step)`` with, for ``step`` counted in optimizer steps from 0:

* warmup (``step < warmup``): ``(step + 1) / warmup``;
* burn-in (``step < burnin``): ``burnin_factor`` (Nickel & Kiela 2017 train the first epochs at
  ``lr / 10`` so that the embedding finds a good angular layout before radii grow);
* cosine (OpenCLIP, Hyp-ViT): ``min_ratio + (1 - min_ratio) * (1 + cos(pi * t)) / 2`` with
  ``t = (step - warmup) / (total - warmup)``; ``constant``: 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class LRSchedule:
    total_steps: int
    warmup_steps: int = 0
    kind: str = "cosine"
    min_ratio: float = 0.0
    burnin_steps: int = 0
    burnin_factor: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; expected one of {', '.join(SCHEDULES)}")
        if self.total_steps < 1 or self.warmup_steps < 0 or self.burnin_steps < 0:
            raise ValueError("total_steps must be >= 1 and warmup/burn-in steps >= 0")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step < self.burnin_steps:
            return self.burnin_factor
        if self.kind == "constant":
            return 1.0
        start = max(self.warmup_steps, self.burnin_steps)
        t = min(1.0, max(0.0, (step - start) / max(1, self.total_steps - start)))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
