"""DPLM-2 (Hsieh et al. 2025; spec §5): a multimodal protein language model over structure tokens and amino acids,
trained by absorbing discrete diffusion on the structure split's chains with the paper's task mixture, with the
structure tokens read and predicted as one of 8,192 indices or as 13 bits (the design-space axis this recipe
measures). The recipe is its configuration (:mod:`.config`), the model (:mod:`hypalign.models.dplm2`), its task for
the shared trainer (:mod:`.task`), sampling (:mod:`.sampling`) and evaluation (:mod:`.evaluation`).

``hypalign train dplm2 --tokenizer RUN``; ``hypalign eval RUN``; ``hypalign fold RUN --fasta F -o DIR`` (PDB files);
``hypalign design RUN --pdb F`` (FASTA); ``hypalign generate RUN --length L --n N -o DIR``;
``hypalign train protclip --encoder RUN --encoder-freeze -1`` (the sequence half as ProtCLIP's frozen tower:
:func:`sequence_encoder`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hypalign import distributed as dist_utils
from hypalign.errors import InputError
from hypalign.models.dplm2 import DPLM2
from hypalign.recipes.dplm2.config import OBJECTIVES, DPLM2Config
from hypalign.recipes.dplm2.sampling import SampleOptions
from hypalign.recipes.dplm2.task import DPLM2Task
from hypalign.recipes.registry import Recipe

#: DPLM-2's temperature annealing for sampling (``annealing@max:min``): index 2.0:1.0, Bit 1.1:0.1 (spec §5.1)
ANNEALING = {"index": (2.0, 1.0), "bit": (1.1, 0.1)}


def train_dplm2(cfg: DPLM2Config, train: Any, say: Any = None) -> dict[str, Any]:
    """Train, save ``RUN/model/``, a copy of the tokenizer in ``RUN/tokenizer/``, ``RUN/eval.json`` and the test chains'
    figures one by one in ``RUN/eval-chains.json`` (ids, fold RMSD / TM, the tokenizer's, AAR)."""
    from hypalign.train import Trainer, finish_run

    say = say or (lambda m: None)
    dist_utils.init_from_env(device=train.device)
    task = DPLM2Task(cfg, seed=train.seed, say=say)
    trainer = Trainer(task, train, extra_config={"recipe": "dplm2", "dplm2": asdict(cfg)})
    if trainer.is_main:
        task.tokenizer.save_pretrained(trainer.run_dir / "tokenizer")

    result = trainer.fit()

    def final() -> dict[str, Any]:  # the trainer's last evaluation to eval.json, its per-chain lists beside it
        from hypalign.io import atomic_write_json

        got = dict(result.metrics) if result.metrics and task.last_chains else task.evaluate(task.model)
        if task.last_chains:
            atomic_write_json(trainer.run_dir / "eval-chains.json", task.last_chains)
        return got

    return finish_run(trainer, result, task.model, final)


def load_run_model(run: Any, which: str = "model") -> DPLM2:
    from hypalign.recipes.dplm2.task import build_model
    from hypalign.runs import load_run, load_trained_model

    run = run if hasattr(run, "recipe_config") else load_run(run, "dplm2")
    cfg = DPLM2Config(**run.recipe_config)
    return load_trained_model(run, DPLM2, which, build=lambda: build_model(cfg, _tokenizer(run).n_bits)).eval()


def _tokenizer(run: Any) -> Any:
    from hypalign.recipes.dplm2.tokens import load_tokenizer

    path = Path(run.path)
    return load_tokenizer(path if (path / "tokenizer").is_dir() else run.recipe_config["tokenizer"])


def evaluate_run(run: Any, data: Path | None = None, which: str | None = None, **_: Any) -> dict[str, Any]:
    """``hypalign eval RUN [--data DIR]``: folding and inverse folding of the run's test chains (or of every chain of
    the PDB / mmCIF files in DIR)."""
    from hypalign.recipes.dplm2.evaluation import evaluate_chains
    from hypalign.recipes.structok.task import load_parts, read_structure_dir

    cfg = DPLM2Config(**run.recipe_config)
    model = load_run_model(run, which or "model")
    if data is not None:
        ss = read_structure_dir(Path(data), lambda m: None)
    else:
        test = load_parts(cfg, lambda m: None)[1]  # type: ignore[arg-type]
        if test is None:
            raise InputError(f"{run.path}: trained without test chains; give --data DIR")
        ss = test.subset(np.arange(min(cfg.eval_chains, len(test))))
    return evaluate_chains(model, _tokenizer(run), ss, cfg.eval_steps)


def _check_lengths(ids: list[str], lengths: list[int], limit: int, skip: bool, what: str) -> list[int]:
    """Rows of at most ``limit`` residues; a longer one is a one-line error, or left out with ``skip``."""
    keep = [i for i, n in enumerate(lengths) if 0 < n <= limit]
    if len(keep) < len(lengths) and not skip:
        i = next(i for i, n in enumerate(lengths) if not 0 < n <= limit)
        raise InputError(f"{what} {ids[i]}: {lengths[i]} residues; the model takes 1-{limit} (--skip-invalid to "
                         "leave such out)")
    return keep


def fold_run(run: Any, fasta: Path, out: Path, steps: int = 100, skip_invalid: bool = False) -> dict[str, Any]:
    """``hypalign fold RUN --fasta F -o DIR``: each sequence's structure tokens by greedy mask-predict, decoded into
    ``DIR/ID.pdb`` (N, CA, C, O; a run trained with ResDiff decodes ``z_q + r̂``; ids that read alike as file names
    get ``ID.2.pdb`` …); ``DIR/tokens.jsonl`` has each id's file and tokens."""
    import json

    from hypalign.data.sequences import read_sequence_file
    from hypalign.data.structures import write_backbone_pdb
    from hypalign.io import atomic_write_text
    from hypalign.recipes.dplm2.evaluation import decode_codes, fold

    model = load_run_model(run)
    ss = read_sequence_file(Path(fasta), skip_invalid)
    keep = _check_lengths(ss.ids, ss.lengths().tolist(), model.max_residues, skip_invalid, f"{fasta}: sequence")
    seqs = [ss.sequence(i) for i in keep]
    codes = fold(model, seqs, SampleOptions(steps=steps, greedy=True))
    tok = _tokenizer(run)
    if model.resdiff_hidden:  # a ResDiff run: z_q + r̂ through the decoder's continuous path
        from hypalign.recipes.dplm2.evaluation import decode_z, resdiff_refine

        backbones = decode_z(tok, resdiff_refine(model, seqs, codes))
    else:
        backbones = decode_codes(tok, codes)
    lines, used = [], set()
    for i, c, bb in zip(keep, codes, backbones, strict=True):
        base = name = _safe(ss.ids[i])
        k = 1
        while name in used:  # two ids that read alike as file names (sp|P1 and sp_P1): name.pdb, name.2.pdb
            k += 1
            name = f"{base}.{k}"
        used.add(name)
        write_backbone_pdb(Path(out) / f"{name}.pdb", bb, ss.sequence(i))
        lines.append(json.dumps({"id": ss.ids[i], "file": f"{name}.pdb", "sequence": ss.sequence(i),
                                 "tokens": c.tolist()}))
    atomic_write_text(Path(out) / "tokens.jsonl", "".join(ln + "\n" for ln in lines))
    return {"folded": len(keep), "skipped": len(ss) - len(keep), "out": str(out)}


def design_run(run: Any, files: list[Path], steps: int = 100, chain: str | None = None,
               skip_invalid: bool = False) -> list[tuple[str, str, float]]:
    """``hypalign design RUN --pdb F…``: a sequence for every chain's backbone (its structure tokens given, greedy
    mask-predict); returns ``(chain id, designed sequence, recovery of the chain's own sequence)``."""
    from hypalign.data.structures import concat_sets, read_structure_file
    from hypalign.eval.structure import sequence_recovery
    from hypalign.recipes.dplm2.evaluation import design
    from hypalign.recipes.dplm2.tokens import structure_codes

    model = load_run_model(run)
    sets = []
    for f in files:  # a file without a usable backbone: its one-line error, or skipped with skip_invalid
        try:
            sets.append(read_structure_file(f, chain=chain)[0])
        except InputError:
            if not skip_invalid:
                raise
    if not sets:
        raise InputError("no chain with a complete backbone in the given files")
    ss = concat_sets(sets)
    keep = _check_lengths(ss.ids, ss.lengths().tolist(), model.max_residues, skip_invalid, "chain")
    ss = ss.subset(keep)
    seqs = design(model, structure_codes(_tokenizer(run), ss), SampleOptions(steps=steps, greedy=True))
    return [(ss.ids[i], s, sequence_recovery(s, ss.sequence(i))) for i, s in enumerate(seqs)]


def generate_run(run: Any, length: int, n: int, out: Path, steps: int = 100, seed: int = 0) -> dict[str, Any]:
    """``hypalign generate RUN --length L --n N -o DIR``: co-generated proteins (DPLM-2's annealed sampling) as
    ``DIR/gen_K.pdb`` and ``DIR/generated.fasta``."""
    from hypalign.data.structures import write_backbone_pdb
    from hypalign.io import atomic_write_text
    from hypalign.recipes.dplm2.evaluation import decode_codes, generate

    model = load_run_model(run)
    if not 1 <= length <= model.max_residues:
        raise InputError(f"--length {length}: the model takes 1-{model.max_residues} residues")
    t_max, t_min = ANNEALING[model.struct_head_kind]
    made = generate(model, [length] * n, SampleOptions(steps=steps, greedy=False, t_max=t_max, t_min=t_min), seed)
    backbones = decode_codes(_tokenizer(run), [c for c, _ in made])
    fasta = []
    for k, ((_, seq), bb) in enumerate(zip(made, backbones, strict=True)):
        write_backbone_pdb(Path(out) / f"gen_{k}.pdb", bb, seq)
        fasta.append(f">gen_{k}\n{seq}\n")
    atomic_write_text(Path(out) / "generated.fasta", "".join(fasta))
    return {"generated": n, "length": length, "out": str(out)}


def sequence_encoder(run: Any, which: str = "model") -> Path:
    """``RUN/sequence-encoder/``: the run's sequence half as a Hugging Face ESM directory
    (:meth:`~hypalign.models.dplm2.DPLM2.sequence_model`, with ESM-2's tokenizer files), written once (atomically)
    and again when the run's weights change; ``hypalign train protclip --encoder RUN`` reads it as the protein
    tower. Returns the directory."""
    import hashlib
    import json
    import os
    import shutil

    from hypalign.encoders import quiet_loading
    from hypalign.io import atomic_write_json
    from hypalign.recipes.protlm import write_tokenizer_files

    path = Path(run.path if hasattr(run, "path") else run)
    out, weights = path / "sequence-encoder", path / which / "model.safetensors"
    h = hashlib.sha256()
    with open(weights, "rb") if weights.is_file() else open(os.devnull, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    source = {"weights": f"{which}/model.safetensors", "sha256": h.hexdigest()}
    stamp = out / "source.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == source:
        return out
    model = load_run_model(run, which).sequence_model()
    tmp = path / f".sequence-encoder.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_loading():
        model.save_pretrained(tmp)
    write_tokenizer_files(tmp)
    atomic_write_json(tmp / "source.json", source)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "chain"


RECIPE = Recipe(
    name="dplm2",
    summary="DPLM-2: multimodal protein LM over structure tokens + amino acids (bit- or index-based).",
    config=DPLM2Config,
    train=lambda cfg, train, say=None: train_dplm2(cfg, train, say),
    load_model=lambda run_dir, which="model": load_run_model(run_dir, which),
    evaluate=evaluate_run,
    train_defaults={"epochs": 18, "lr": 5e-4, "weight_decay": 0.01, "warmup_steps": 200, "schedule": "cosine",
                    "betas": (0.9, 0.98), "eval_every": 0, "log_every": 20, "optimizer": "adamw", "grad_clip": 0.5},
    best_metric=("fold_tm_median", "max"),
    objectives=OBJECTIVES,
    evaluate_options=frozenset({"data", "which"}),
)

__all__ = ["ANNEALING", "OBJECTIVES", "RECIPE", "DPLM2Config", "DPLM2Task", "design_run", "fold_run", "generate_run",
           "sequence_encoder", "train_dplm2"]
