"""InfoAlign's downstream protocol on a property file or a packaged property set: frozen ``μ`` of the run's encoder,
the MLP head of :func:`hypalign.eval.property.fit_head` trained per seed, test metrics (mean ± std over seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hypalign.errors import InputError


def infer_task(labels: np.ndarray) -> str:
    """``classification`` when every known label is 0 or 1, else ``regression``."""
    known = labels[np.isfinite(labels)]
    return "classification" if known.size and np.isin(known, (0.0, 1.0)).all() else "regression"


def evaluate_frozen(x: np.ndarray, labels: np.ndarray, parts: dict[str, np.ndarray], task: str,
                    seeds: Sequence[int] = (0, 1, 2), cliff: np.ndarray | None = None) -> dict[str, float]:
    """Test metrics of the head on features ``x`` over ``seeds`` (``cliff``: also the activity-cliff RMSE)."""
    from hypalign.eval.property import cliff_rmse, fit_head, property_metrics, summarise

    runs = []
    test = parts["test"]
    for seed in seeds:
        pred = fit_head(x, labels, parts, task, seed=seed)
        m = property_metrics(pred[test], labels[test], task)
        if cliff is not None:
            m["cliff_rmse"] = cliff_rmse(pred[test], labels[test], cliff[test])
        runs.append(m)
    return summarise(runs)


def evaluate_property_file(model: Any, path: str, targets: Sequence[str] | None = None, task: str | None = None,
                           split: str = "scaffold", seeds: Sequence[int] = (0, 1, 2),
                           skip_invalid: bool = False) -> dict[str, Any]:
    """``hypalign eval RUN --property FILE [--target COL] [--task …] [--split scaffold|random]``."""
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
    x, _ = embed_smiles(model, table.smiles)
    out: dict[str, Any] = evaluate_frozen(x.numpy(), table.labels, parts, task, seeds)
    out.update({"task": task, "split": split, "targets": ",".join(table.columns), "skipped": table.skipped,
                **{f"n_{k}": len(v) for k, v in parts.items()}})
    return out
