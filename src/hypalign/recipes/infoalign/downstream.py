"""InfoAlign's downstream protocol on a property file or a packaged property set: frozen ``μ`` of the run's encoder,
the MLP head of :func:`hypalign.eval.property.fit_head` trained per seed, test metrics (mean ± std over seeds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hypalign.errors import InputError


def infer_task(labels: np.ndarray) -> str:
    """``classification`` when every known label is 0 or 1, else ``regression``."""
    known = labels[np.isfinite(labels)]
    return "classification" if known.size and np.isin(known, (0.0, 1.0)).all() else "regression"


def scores_over_seeds(predict: Callable[[int], np.ndarray], labels: np.ndarray, parts: dict[str, np.ndarray],
                      task: str, seeds: Sequence[int] = (0, 1, 2),
                      cliff: np.ndarray | None = None) -> dict[str, float]:
    """Test metrics of ``predict(seed=seed)`` (predictions for every row) over ``seeds``, mean ± std (``cliff``: also
    the activity-cliff RMSE on the test part's cliff molecules)."""
    from hypalign.eval.property import cliff_rmse, property_metrics, summarise

    runs = []
    test = parts["test"]
    for seed in seeds:
        pred = predict(seed=seed)
        m = property_metrics(pred[test], labels[test], task)
        if cliff is not None:
            m["cliff_rmse"] = cliff_rmse(pred[test], labels[test], cliff[test])
        runs.append(m)
    return summarise(runs)


def evaluate_frozen(x: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray], task: str,
                    seeds: Sequence[int] = (0, 1, 2), cliff: np.ndarray | None = None) -> dict[str, float]:
    """Test metrics of the head on features ``x`` over ``seeds`` (``cliff``: also the activity-cliff RMSE)."""
    from hypalign.eval.property import fit_head

    return scores_over_seeds(lambda seed: fit_head(x, labels, parts, task, seed=seed), labels, parts, task, seeds,
                             cliff)


def evaluate_finetuned(model: Any, smiles: Sequence[str], labels: np.ndarray, parts: dict[str, np.ndarray], task: str,
                       seeds: Sequence[int] = (0, 1, 2), cliff: np.ndarray | None = None,
                       epochs: int = 30) -> dict[str, float]:
    """Test metrics of the pre-trained encoder fine-tuned with the head (:func:`fit_from_scratch` with
    ``pretrained``), one fit per seed."""
    return scores_over_seeds(
        lambda seed: fit_from_scratch(smiles, labels, parts, task, seed=seed, epochs=epochs, pretrained=model),
        labels, parts, task, seeds, cliff)


def evaluate_property_file(model: Any, path: str, targets: Sequence[str] | None = None, task: str | None = None,
                           split: str = "scaffold", seeds: Sequence[int] = (0, 1, 2),
                           skip_invalid: bool = False, finetune: bool = False) -> dict[str, Any]:
    """``hypalign eval RUN --property FILE [--target COL] [--task …] [--split scaffold|random] [--finetune]``: the
    head on the frozen ``μ``, or (``finetune``) the encoder fine-tuned with it (:func:`fit_from_scratch`)."""
    from hypalign.data.molecules import random_split, read_property_table, scaffold_split
    from hypalign.recipes.infoalign.evaluation import embed_smiles

    table = read_property_table(path, targets, skip_invalid=skip_invalid)
    if len(table) < 10:
        raise InputError(f"{path}: {len(table)} molecules; a train/valid/test split needs at least 10")
    task = task or infer_task(table.labels)
    if task not in ("regression", "classification"):
        raise InputError(f"--task {task!r}: expected regression or classification")
    if task == "classification" and not np.isin(table.labels[np.isfinite(table.labels)], (0.0, 1.0)).all():
        raise InputError(f"{path}: --task classification needs labels 0 or 1 in {', '.join(table.columns)}")
    if split == "scaffold":
        parts = scaffold_split(table.mols)
    elif split == "random":
        parts = random_split(len(table))
    else:
        raise InputError(f"--split {split!r}: expected scaffold or random")
    if finetune:
        out: dict[str, Any] = evaluate_finetuned(model, table.smiles, table.labels, parts, task, seeds)
    else:
        x, _ = embed_smiles(model, table.smiles)
        out = evaluate_frozen(x.numpy(), table.labels, parts, task, seeds)
    out.update({"task": task, "split": split, "protocol": "finetune" if finetune else "frozen",
                "targets": ",".join(table.columns), "skipped": table.skipped,
                **{f"n_{k}": len(v) for k, v in parts.items()}})
    return out


def fit_from_scratch(smiles: Sequence[str], labels: np.ndarray, parts: dict[str, np.ndarray], task: str,
                     seed: int = 0, layers: int = 5, dim: int = 300, dropout: float = 0.5, epochs: int = 30,
                     patience: int = 10, batch_size: int = 128, lr: float = 1e-3, readout: str = "mean",
                     pretrained: Any = None, encoder_lr: float = 1e-4) -> np.ndarray:
    """The baseline the paper argues against: the same GIN (:class:`~hypalign.encoders.molecule.GINVirtual`) and head
    trained end to end on one task's training part — L1 on standardised targets (regression) or BCE, Adam, early
    stopping on the valid part's loss (``patience`` epochs), the best epoch kept. Returns predictions for every
    molecule (regression: label units; classification: probabilities). ``readout``: ``mean`` (OGB's default) — a
    sum readout trained from scratch on ESOL's 700 training molecules predicted +900 log units for its largest test
    molecules (a sum grows with the molecule; nothing in so few examples bounds the head).

    ``pretrained`` (an :class:`~hypalign.models.infoalign.InfoAlign`): fine-tuning instead — a copy of its GIN and
    bottleneck (``μ``, the pre-trained readout and width; standardised by its mean and standard deviation over the
    training molecules at the start, as the frozen head reads it) trained with the head, the copied parts at
    ``encoder_lr`` (a tenth of the head's by default, so the pre-trained representation is adjusted, not
    overwritten); the model given is not changed."""
    import copy

    import torch
    from torch import nn
    from torch_geometric.data import Batch

    from hypalign.data.molecules import mol_graphs, parse_smiles
    from hypalign.encoders.molecule import GINVirtual
    from hypalign.eval.property import from_standardised, masked_loss, standardise_targets, train_early_stopping

    y = np.asarray(labels, np.float32).reshape(len(smiles), -1)
    tr, va = parts["train"], parts["valid"]
    yt, ym, ys = standardise_targets(y, tr, task)
    graphs = mol_graphs(parse_smiles(list(smiles), "property set")[0])
    torch.manual_seed(seed)
    if pretrained is None:
        encoder: nn.Module = GINVirtual(layers, dim, dropout, readout)
    else:
        class Mu(nn.Module):
            """The pre-trained ``μ``: GIN, then the bottleneck's first half."""

            def __init__(self) -> None:
                super().__init__()
                self.gin, self.dist_net = copy.deepcopy(pretrained.encoder), copy.deepcopy(pretrained.dist_net)
                self.register_buffer("shift", torch.zeros(dim))
                self.register_buffer("scale", torch.ones(dim))

            def forward(self, batch: Any) -> torch.Tensor:
                return (self.dist_net(self.gin(batch)).chunk(2, dim=-1)[0] - self.shift) / self.scale

        dim = int(pretrained.dim)
        encoder = Mu().float().cpu()
        with torch.no_grad():  # standardised on the training molecules, as the frozen protocol's head reads μ
            encoder.eval()
            mu = torch.cat([encoder(Batch.from_data_list([graphs[i] for i in tr[s : s + 512].tolist()]))
                            for s in range(0, len(tr), 512)])
            encoder.shift.copy_(mu.mean(0))
            encoder.scale.copy_(mu.std(0) + 1e-6)
    model = nn.ModuleDict({"gin": encoder, "head": nn.Sequential(
        nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, y.shape[1]))})
    opt = torch.optim.Adam([{"params": model["head"].parameters(), "lr": lr},
                            {"params": encoder.parameters(), "lr": lr if pretrained is None else encoder_lr}])
    rng = np.random.default_rng(seed)

    def forward(idx: np.ndarray) -> torch.Tensor:
        return model["head"](model["gin"](Batch.from_data_list([graphs[i] for i in idx.tolist()])))

    def predict(idx: np.ndarray) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            out = torch.cat([forward(idx[s : s + 512]) for s in range(0, len(idx), 512)])
        model.train()
        return out

    def train_epoch() -> None:
        order = rng.permutation(tr)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            if len(idx) < 2:  # batch norm needs two molecules
                continue
            opt.zero_grad()
            masked_loss(forward(idx), yt[torch.from_numpy(idx)], task).backward()
            opt.step()

    def valid_loss() -> float:
        return float(masked_loss(predict(va), yt[torch.from_numpy(va)], task)) if len(va) else 0.0

    model.train()
    train_early_stopping(model, train_epoch, valid_loss, epochs, patience)
    return from_standardised(predict(np.arange(len(smiles))).numpy(), ym, ys, task)
