"""InfoAlign (Liu et al., ICLR 2025, "Learning Molecular Representation in a Cell"; spec §4): a molecule's GIN
encoder trained through an information bottleneck to decode the context that random walks reach from it on a
context graph (targets, GO terms, pathways, classes, roles, or a user's cell-morphology and expression profiles).

``hypalign train infoalign --graph DIR``; ``hypalign eval RUN`` (zero-shot context retrieval of the held-out
molecules); ``hypalign embed RUN FILE -o OUT.npy`` (μ of any molecules: a ``.smi`` file or a CSV with a smiles
column). The graph's file format: :mod:`hypalign.data.context_graph`; docs/infoalign.md.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from hypalign import distributed as dist_utils
from hypalign.recipes.infoalign.config import OBJECTIVES, InfoAlignConfig
from hypalign.recipes.registry import Recipe


def train_infoalign(cfg: InfoAlignConfig, train: Any, say: Any = None, graph: Any = None) -> dict[str, Any]:
    """Train; save ``RUN/model/`` (``save_pretrained``) and ``RUN/eval.json`` (the held-out context retrieval)."""
    from hypalign.recipes.infoalign.task import InfoAlignTask
    from hypalign.train import Trainer, finish_run

    say = say or (lambda m: None)
    dist_utils.init_from_env(device=train.device)
    task = InfoAlignTask(cfg, seed=train.seed, say=say, graph=graph)
    trainer = Trainer(task, train, extra_config={"recipe": "infoalign", "infoalign": asdict(cfg)})
    result = trainer.fit()
    return finish_run(trainer, result, task.model, lambda: task.evaluate(task.model), throughput_key="molecules_per_s")


def load_run_model(run: Any, which: str = "model") -> Any:
    from hypalign.models.infoalign import InfoAlign
    from hypalign.runs import load_trained_model

    return load_trained_model(run, InfoAlign, which)


def evaluate_run(run: Any, which: str | None = None, property: str | None = None, target: str | None = None,
                 task: str | None = None, split: str | None = None, skip_invalid: bool = False,
                 finetune: bool = False, **_: Any) -> dict[str, Any]:
    """``hypalign eval RUN``: the zero-shot context retrieval of the run's held-out molecules (same graph, same
    seed: the same held-out molecules); with ``--property FILE.csv [--target COL,…] [--task regression|
    classification] [--split scaffold|random] [--finetune]``: the paper's head on the frozen representation (or the
    encoder fine-tuned with it), 3 seeds."""
    from hypalign.recipes.infoalign.task import InfoAlignTask

    if property is not None:
        from hypalign.recipes.infoalign.downstream import evaluate_property_file

        targets = [t.strip() for t in target.split(",") if t.strip()] if target else None
        return evaluate_property_file(load_run_model(run, which or "model"), property, targets, task,
                                      split or "scaffold", skip_invalid=skip_invalid, finetune=finetune)
    if target or task or split or finetune:
        from hypalign.errors import InputError

        raise InputError("--target, --task, --split and --finetune go with --property FILE (a property table)")

    cfg = InfoAlignConfig(**run.recipe_config)
    task = InfoAlignTask(cfg, seed=int(run.train_config.get("seed", 0)))
    return task.evaluate(load_run_model(run, which or "model"))  # what training reported, from the saved weights


def embed(run: Any, inputs: list[str], out: Path, skip_invalid: bool = False, features: bool = False,
          say: Any = print, **_: Any) -> dict[str, Any]:
    """The molecules of the input files (``.smi`` or CSV/TSV with a smiles column) -> ``out`` (.npy) and their ids
    (``out`` with .txt): in the run's own space — the alignment head's points (Lorentz space components, curvature −1;
    or unit vectors) for a run trained with it, ``μ`` (Euclidean) otherwise; ``features``: ``μ`` always (what the
    property heads read)."""
    import numpy as np

    from hypalign.data.molecules import read_smiles_file
    from hypalign.errors import InputError
    from hypalign.io import atomic_write_text, save_npy
    from hypalign.recipes.infoalign.evaluation import embed_smiles

    if not inputs:
        raise InputError("no input: give one or more .smi or CSV files of molecules")
    model = load_run_model(run)
    aligned = bool(model.align_dim) and not features
    ids: list[str] = []
    vecs = []
    skipped = 0
    for f in inputs:
        fid, smi, lines = read_smiles_file(f)
        emb, kept = embed_smiles(model, smi, source=str(f), skip_invalid=skip_invalid, lines=lines, aligned=aligned)
        skipped += len(smi) - len(kept)
        ids += [fid[i] for i in kept.tolist()]
        vecs.append(emb.numpy())
    if skipped:
        say(f"skipped {skipped} molecules with an unparsable SMILES")
    arr = np.concatenate(vecs).astype(np.float32)
    save_npy(out, arr)
    atomic_write_text(Path(out).with_suffix(".txt"), "".join(f"{i}\n" for i in ids))
    geometry = model.geometry.name if aligned else "euclidean"
    return {"n": len(ids), "dim": int(arr.shape[1]), "geometry": geometry, "c": 1.0 if aligned else None,
            "skipped": skipped}


RECIPE = Recipe(
    name="infoalign",
    summary="InfoAlign: molecule representations that decode their context on a graph (GIN + information "
            "bottleneck).",
    config=InfoAlignConfig,
    train=lambda cfg, train, say=None: train_infoalign(cfg, train, say),
    load_model=lambda run_dir, which="model": load_run_model(run_dir, which),
    evaluate=evaluate_run,
    embed=embed,
    train_defaults={"epochs": 5, "lr": 1e-3, "weight_decay": 1e-8, "warmup_steps": 0, "schedule": "cosine",
                    "eval_every": 5, "log_every": 20, "optimizer": "adam", "grad_clip": 1.0},
    best_metric=("mrr", "max"),
    objectives=OBJECTIVES,
    evaluate_options=frozenset({"which", "property", "target", "task", "split", "skip_invalid", "finetune"}),
    embed_options=frozenset({"skip_invalid", "features"}),
)

__all__ = ["OBJECTIVES", "RECIPE", "InfoAlignConfig", "train_infoalign"]
