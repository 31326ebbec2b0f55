"""Run under ``torchrun --standalone --nproc-per-node 2 tests/ddp_protclip_check.py OUT_DIR`` (gloo, CPU).

ProtCLIP under DDP: (1) one training step's towers run through ``DistributedDataParallel.forward``
(``ProtCLIP.forward``), and the protein-text InfoNCE over embeddings gathered *with* gradient
(``clip_loss``), the protein-homolog InfoNCE (a second protein pass) and the MLM loss give, after DDP's
gradient averaging, the gradient of the same loss on one process over the global batch — Lorentz,
sphere, and Lorentz with a separate homology head; (2) ``ProtCLIPTask.batches`` deals each global batch
to the ranks without overlap.
Writes ``OUT_DIR/rank{r}.json``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from hypalign import distributed as du
from hypalign.encoders.protein import mask_residues
from hypalign.losses.contrastive import clip_loss
from hypalign.models.protclip import ProtCLIP
from hypalign.recipes.protclip import ProtCLIPTask


def step_loss(model: nn.Module, batch: dict[str, torch.Tensor], gather: bool) -> torch.Tensor:
    m = model.module if hasattr(model, "module") else model
    f = model(batch)
    mlm = nn.functional.cross_entropy(f["mlm_logits"].flatten(0, 1), batch["mlm_labels"].flatten())
    return (clip_loss(f["protein"], f["desc"], m.geometry, m.logit_scale, gather=gather) + 0.3 * mlm
            + clip_loss(f["protein_search"], f["pair"], m.search_geometry, m.homology_logit_scale, gather=gather))


def main() -> None:
    out = Path(sys.argv[1])
    assert du.init_from_env("gloo")
    rank, world = du.rank(), du.world_size()
    res: dict = {"world": world}
    g = torch.Generator().manual_seed(1)
    per = 4
    ids = torch.randint(4, 24, (per * world, 20), generator=g)
    ids[:, 0], ids[:, -1] = 0, 2
    mlm_ids, mlm_labels = mask_residues(ids, 0.15, np.random.default_rng(0))
    pair_ids = torch.randint(4, 24, (per * world, 20), generator=g)
    pair_ids[:, 0], pair_ids[:, -1] = 0, 2
    full = {"ids": ids, "mask": torch.ones_like(ids, dtype=torch.bool), "mlm_ids": mlm_ids, "mlm_labels": mlm_labels,
            "desc": torch.randn(per * world, 16, generator=g), "pair_ids": pair_ids,
            "pair_mask": torch.ones_like(pair_ids, dtype=torch.bool)}
    local = {k: v[rank * per : (rank + 1) * per] for k, v in full.items()}
    # the MLM loss is a mean over masked residues: weigh it per rank so DDP's average equals the global mean
    n_all, n_mine = int((mlm_labels != -100).sum()), int((local["mlm_labels"] != -100).sum())
    for name in ("lorentz", "sphere", "lorentz+head"):
        torch.manual_seed(0)
        geometry = name.split("+")[0]
        model = ProtCLIP(cnn_dim=8, cnn_layers=1, text_dim=16, hidden=16, emb_dim=8, geometry=geometry, n_terms=3,
                         mlm=True, homology=True, homology_head=name.endswith("+head"))
        model.term_scale.requires_grad_(False)
        model.term_bias.requires_grad_(False)
        ref = copy.deepcopy(model)
        ddp = nn.parallel.DistributedDataParallel(model)
        f = ddp(local)
        gc = clip_loss(f["protein"], f["desc"], model.geometry, model.logit_scale)
        mlm = nn.functional.cross_entropy(f["mlm_logits"].flatten(0, 1), local["mlm_labels"].flatten())
        hom = clip_loss(f["protein_search"], f["pair"], model.search_geometry, model.homology_logit_scale)
        (gc + 0.3 * mlm * (n_mine * world / n_all) + hom).backward()
        ref_loss = step_loss(ref, full, gather=False)
        ref_loss.backward()
        pairs = [(p, q) for p, q in zip(model.parameters(), ref.parameters(), strict=True) if q.requires_grad]
        err = max((p.grad - q.grad).abs().max().item() for p, q in pairs)
        scale = max(q.grad.abs().max().item() for _, q in pairs)
        res[name] = {"gc": float(gc.detach()), "grad_err": err, "grad_scale": scale}
    ns = SimpleNamespace(train_positions=np.arange(50), seed=0, cfg=SimpleNamespace(batch_size=8))
    from hypalign.train import shard_batches  # the trainer deals every process's batches to the ranks

    mine = shard_batches(ProtCLIPTask.batches(ns, 0), rank, world)  # type: ignore[arg-type]
    res["batches"] = [b[:-1].tolist() for b in mine]
    (out / f"rank{rank}.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main()
