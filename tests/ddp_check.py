"""Run under ``torchrun --standalone --nproc-per-node 2 tests/ddp_check.py OUT_DIR`` (gloo, CPU).

Checks (1) the Hyp-ViT loss over embeddings gathered across processes *with* gradient gives, after
DDP's averaging, the gradient of the same loss on one process over the whole batch; (2) the shared
trainer under DDP keeps the ranks' weights identical and only rank 0 writes the run directory.
Writes ``OUT_DIR/rank{r}.json``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from hypalign import distributed as du
from hypalign.geometry import PoincareBall
from hypalign.losses.pairwise import pairwise_ce_loss
from hypalign.train import Trainer


def main() -> None:
    out = Path(sys.argv[1])
    assert du.init_from_env("gloo")
    rank, world = du.rank(), du.world_size()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.Tanh(), nn.Linear(32, 8))
    ref = copy.deepcopy(model)
    ddp = nn.parallel.DistributedDataParallel(model)
    geom = PoincareBall(c=0.1)
    g = torch.Generator().manual_seed(1)
    n_cls, m = 4 * world, 3
    images = torch.randn(n_cls * m, 3, 4, 4, generator=g)  # class-major: class k = rows k*m..k*m+m-1
    per = n_cls // world * m
    local = images[rank * per : (rank + 1) * per]

    def embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return geom.expmap0(geom.feature_clip(net(x), 2.3))

    z = du.all_gather_with_grad(embed(ddp, local))
    loss, _ = pairwise_ce_loss(z.view(-1, m, 8), geom, 0.2)
    loss.backward()
    ref_loss, _ = pairwise_ce_loss(embed(ref, images).view(-1, m, 8), geom, 0.2)
    ref_loss.backward()
    grad_err = max((p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters(),
                                                                            strict=True))
    grad_scale = max(q.grad.abs().max().item() for q in ref.parameters())

    # the trainer under DDP (toy regression task, 2 epochs)
    from toy_task import ToyTask, config

    run = out / "run"
    task = ToyTask()
    Trainer(task, config(str(run), epochs=2, threads=1, device="cpu")).fit()
    flat = torch.cat([p.detach().flatten() for p in task.model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    same = all(torch.equal(gathered[0], x) for x in gathered)
    (out / f"rank{rank}.json").write_text(json.dumps({
        "loss": loss.item(), "ref_loss": ref_loss.item(), "grad_err": grad_err, "grad_scale": grad_scale,
        "weights_equal_across_ranks": same, "world": world,
    }))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
