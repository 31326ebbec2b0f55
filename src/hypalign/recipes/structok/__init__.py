"""The structure tokenizer (DPLM-2's, spec §5.1; Hsieh et al. 2025): backbone geometry to 13 sign bits per residue and
back. The recipe is its configuration (:mod:`.config`), the model (:mod:`hypalign.models.structok`), its task for the
shared trainer (:mod:`.task`) and its evaluation (:mod:`.evaluation`, metrics from :mod:`hypalign.eval.structure`).
``hypalign train structure-tokenizer``; ``hypalign tokenize RUN --pdb FILE…`` (tokens, bits, ``--decode``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hypalign import distributed as dist_utils
from hypalign.errors import InputError
from hypalign.models.structok import StructureTokenizer
from hypalign.recipes.registry import Recipe
from hypalign.recipes.structok.config import OBJECTIVES, StructokConfig
from hypalign.recipes.structok.task import StructokTask


def train_structok(cfg: StructokConfig, train: Any, say: Any = None) -> dict[str, Any]:
    """Train, save ``RUN/model/`` and ``RUN/eval.json`` (the final reconstruction of the test chains)."""
    from hypalign.train import Trainer, finish_run

    say = say or (lambda m: None)
    dist_utils.init_from_env(device=train.device)
    task = StructokTask(cfg, seed=train.seed, say=say)
    trainer = Trainer(task, train, extra_config={"recipe": "structure-tokenizer", "structure-tokenizer": asdict(cfg)})
    return finish_run(trainer, trainer.fit(), task.model, lambda: task.evaluate(task.model))


def load_run_model(run: Any, which: str = "model") -> StructureTokenizer:
    """The trained tokenizer of a run (``model/``, else a checkpoint into the model its config describes)."""
    from hypalign.recipes.structok.task import build_model
    from hypalign.runs import load_trained_model

    cfg = StructokConfig(**run.recipe_config) if hasattr(run, "recipe_config") else StructokConfig()
    return load_trained_model(run, StructureTokenizer, which, build=lambda: build_model(cfg))


def evaluate_run(run: Any, data: Path | None = None, which: str | None = None, **_: Any) -> dict[str, float]:
    """``hypalign eval RUN [--data DIR]``: reconstruction of the run's test chains, or of every chain of the PDB /
    mmCIF files in DIR."""
    from hypalign.recipes.structok.evaluation import evaluate_chains
    from hypalign.recipes.structok.task import load_parts, read_structure_dir

    cfg = StructokConfig(**run.recipe_config)
    model = load_run_model(run, which or "model")
    if data is not None:
        ss = read_structure_dir(Path(data), lambda m: None)
    else:
        test = load_parts(cfg, lambda m: None)[1]
        if test is None:
            raise InputError(f"{run.path}: trained without test chains; give --data DIR")
        ss = test.subset(np.arange(min(cfg.eval_chains, len(test))))
    return evaluate_chains(model, ss)


def tokenize_run(run: Any, files: list[Path], out: Path | None = None, decode: Path | None = None,
                 chain: str | None = None, echo: Any = print) -> dict[str, Any]:
    """``hypalign tokenize RUN --pdb FILE…``: every chain's structure tokens (code indices) and bits (13 characters
    of 0/1 per residue, bit 0 first) as JSON lines (to ``out`` or printed); ``--decode DIR`` also writes each chain's
    backbone rebuilt from its tokens as PDB."""
    from hypalign.data.structures import concat_sets, pad_chains, read_structure_file, write_backbone_pdb
    from hypalign.io import atomic_write_text

    model = load_run_model(run)
    if model.alphabet != "lfq":
        raise InputError(f"{getattr(run, 'path', run)}: a 3di run reads foldseek's tokens (mini3di); tokenize needs "
                         "an lfq run")
    model.eval()
    sets = [read_structure_file(f, chain=chain)[0] for f in files]
    ss = concat_sets(sets)
    lines, n_res = [], 0
    with torch.no_grad():
        for i in range(len(ss)):
            x, mask = pad_chains([ss.backbone(i)])
            zq = model.quantize(model.encode(x, mask))
            codes = model.codes(zq)[0]
            bits = ["".join("1" if b > 0 else "0" for b in row) for row in zq[0].tolist()]
            lines.append(json.dumps({"id": ss.ids[i], "sequence": ss.sequence(i), "tokens": codes.tolist(),
                                     "bits": bits}))
            n_res += len(codes)
            if decode is not None:
                rebuilt = model.decode(model.bits(codes)[None], mask)[0].numpy()
                write_backbone_pdb(Path(decode) / f"{ss.ids[i]}.pdb", rebuilt, ss.sequence(i))
    if out is not None:
        atomic_write_text(out, "".join(ln + "\n" for ln in lines))
    else:
        for ln in lines:
            echo(ln)
    return {"chains": len(ss), "residues": n_res}


RECIPE = Recipe(
    name="structure-tokenizer",
    summary="DPLM-2's structure tokenizer: backbone geometry to 13 sign bits per residue (LFQ) and back.",
    config=StructokConfig,
    train=lambda cfg, train, say=None: train_structok(cfg, train, say),
    load_model=lambda run_dir, which="model": load_run_model(run_dir, which),
    evaluate=evaluate_run,
    train_defaults={"epochs": 10, "lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 200, "schedule": "cosine",
                    "eval_every": 5, "log_every": 10, "optimizer": "adamw", "grad_clip": 1.0},
    best_metric=("rmsd_q_median", "min"),
    objectives=OBJECTIVES,
    evaluate_options=frozenset({"data", "which"}),
)

__all__ = ["OBJECTIVES", "RECIPE", "StructokConfig", "StructokTask", "StructureTokenizer", "tokenize_run",
           "train_structok"]
