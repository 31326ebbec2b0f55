"""ProtCLIP runs: training through the shared trainer, the nearest-neighbour transfer fitted after it, and what a
finished run does (evaluate, predict GO terms, compare with the sequence baselines)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hypalign import distributed as dist_utils
from hypalign.data.go import Ontology
from hypalign.data.go_split import GOSplitData, prepare_go_split
from hypalign.data.protein import ONTOLOGIES
from hypalign.eval.baselines import blend_with_diamond, run_baselines, subset_metrics
from hypalign.eval.function import evaluate_scores, summarise_metrics
from hypalign.recipes.protclip.config import ProtCLIPConfig, check_config
from hypalign.recipes.protclip.scoring import embed_protein_spaces, heldout_term_scores, predict_scores, term_table
from hypalign.recipes.protclip.task import ProtCLIPTask
from hypalign.runs import read_run_config
from hypalign.search.transfer import TransferReference, fit_transfer
from hypalign.train import TrainConfig, Trainer


def fit_protclip_transfer(model: Any, gsd: GOSplitData, valid_embeddings: torch.Tensor,
                          valid_terms: dict[str, np.ndarray], k: int = 200, max_len: int = 1024,
                          say: Any = None) -> TransferReference:
    """Embed the training proteins (in ``model.search_geometry``) and fit the nearest-neighbour GO transfer on the
    validation proteins (:func:`~hypalign.search.transfer.fit_transfer`, Fmax with the root left out)."""
    log = say if callable(say) else (lambda msg: None)
    log(f"nearest-neighbour transfer: embedding the {len(gsd.split.train)} training proteins, then choosing "
        "k, tau and alpha on the valid proteins")
    reference = embed_protein_spaces(model, gsd.sequences("train"), max_len)[1]
    labels = {o: gsd.truth[o]["train"] for o in gsd.ontologies}
    return fit_transfer(reference, labels, valid_embeddings, valid_terms, model.search_geometry,
                        lambda o, s: evaluate_scores(gsd, o, "valid", s, fmax_only=True)["fmax"], k, say)


def train_protclip(cfg: ProtCLIPConfig, train: TrainConfig, gsd: GOSplitData | None = None,
                   say: Any = None, keep_task: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train; save ``runs/NAME/model/`` (``save_pretrained``) and ``eval.json`` (valid and test, every
    metric). ``keep_task``: a dict that receives the task (``"task"``) and the final valid/test GO scores
    (``"scores"``: ``{part: {ontology: matrix}}``, the same that eval.json summarises)."""
    from dataclasses import asdict, replace
    from pathlib import Path

    from hypalign.io import atomic_write_json

    check_config(cfg)  # before minutes of data loading (the task checks again: it can be built alone)
    dist_utils.init_from_env(device=train.device)
    task = ProtCLIPTask(cfg, seed=train.seed, gsd=gsd, say=say)
    if train.resume:  # the checkpoint must continue on the split it started on
        check_run_split(train.run_dir, read_run_config(train.run_dir, "protclip"), task.gsd)
    cfg = replace(cfg, split_fingerprint=task.gsd.split.fingerprint())  # the caller's configs stay as given
    if keep_task is not None:
        keep_task["task"] = task
    if train.best_metric is None:
        train = replace(train, best_metric="fmax", best_mode="max")
    trainer = Trainer(task, train, extra_config={"recipe": "protclip", "protclip": asdict(cfg)})
    result = trainer.fit()
    out: dict[str, Any] = {"epochs": result.epoch, "steps": result.step, "train_seconds": result.seconds}
    if trainer.is_main:
        run = Path(train.run_dir)
        model, gsd = task.model, task.gsd
        features = task.text_features(model)
        if cfg.text_tune:  # saved with the model: predict needs neither the layers' rerun nor the original encoder
            model.remember_term_features(task.term_names, features)
        model.save_pretrained(run / "model")
        log = say if callable(say) else (lambda msg: None)
        log(f"model saved to {run / 'model'}; embedding the valid and test proteins against every GO term")
        # each held-out part embedded once: term scores, transfer fitting (valid) and every metric reuse it
        emb, terms = heldout_term_scores(model, gsd, features, task.offset, cfg.eval_max_len)
        scores = terms
        if cfg.transfer_k > 0:
            reference = fit_protclip_transfer(model, gsd, emb["valid"], terms["valid"], cfg.transfer_k,
                                              cfg.eval_max_len, say)
            model.transfer_reference = reference  # part of the model's saved state from now on
            reference.save(run / "model")
            out["transfer"] = {"k": reference.k, "ks": reference.ks, "tau": reference.tau, "alpha": reference.alpha}
            out["term_only"] = {"test": summarise_metrics(gsd, "test", terms["test"])}
            scores = reference.combine_parts(emb, terms, model.search_geometry)
        for p in emb:
            out[p] = summarise_metrics(gsd, p, scores[p])
        if keep_task is not None:
            keep_task["scores"] = scores
        atomic_write_json(run / "eval.json", out)
    return out


# ---- prediction with a trained run ---------------------------------------------------------------------
def load_protclip_run(run: str | Any) -> tuple[Any, dict[str, Any]]:
    """The trained model of a ``hypalign train protclip`` run directory and its config. The model comes from
    ``ProtCLIP.from_pretrained(run/"model")`` alone: its nearest-neighbour reference and tuned term features are
    part of its saved state."""
    import contextlib
    import io
    from pathlib import Path

    from hypalign.errors import InputError
    from hypalign.models.protclip import ProtCLIP

    run = Path(run)
    cfg = read_run_config(run, "protclip")
    if not (run / "model" / "model.safetensors").is_file():
        raise InputError(f"{run}: no model/ (the run has not finished; resume it with --resume)")
    with contextlib.redirect_stdout(io.StringIO()):  # huggingface_hub prints a line; keep stdout clean
        model = ProtCLIP.from_pretrained(str(run / "model"))
    return model.eval(), cfg


def predict_go(model: Any, cfg: dict[str, Any], seqs: list[str], top: int = 20,
               ontologies: tuple[str, ...] = ONTOLOGIES) -> list[dict[str, list[tuple[str, str, float]]]]:
    """Per protein and ontology, the ``top`` GO terms ``(id, name, score)`` by propagated score."""
    from hypalign.errors import InputError

    onts = {o: Ontology(o) for o in ONTOLOGIES}
    if sum(len(x) for x in onts.values()) != model.term_bias.shape[0]:
        raise InputError(f"the model scores {model.term_bias.shape[0]} GO terms but this GO graph has "
                         f"{sum(len(x) for x in onts.values())}; it was trained on another metastudent-data version")
    _, offset, feats = term_table(onts, cfg["protclip"].get("text_path"), model=model)
    scores = predict_scores(model, seqs, {o: onts[o] for o in ontologies}, feats, offset,
                            cfg["protclip"].get("eval_max_len", 1024), getattr(model, "transfer_reference", None))
    out: list[dict[str, list[tuple[str, str, float]]]] = []
    for i in range(len(seqs)):
        row = {}
        for o, s in scores.items():
            k = min(top, s.shape[1])
            part = np.argpartition(-s[i], k - 1)[:k]
            best = part[np.argsort(-s[i, part], kind="stable")]
            row[o] = [(onts[o].terms[j], onts[o].names[j], float(s[i, j])) for j in best.tolist()]
        out.append(row)
    return out


def run_scores(model: Any, cfg: dict[str, Any], gsd: GOSplitData, parts: tuple[str, ...] = ("test",),
               ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """``(embeddings, term scores, GO scores)`` of a loaded run (:func:`load_protclip_run`) on ``parts`` of
    ``gsd``: ``{part: embeddings in model.search_geometry}`` (:func:`heldout_term_scores`) and
    ``{part: {ontology: matrix}}`` twice; the GO scores blend in its nearest-neighbour transfer when it has one."""
    pc = cfg["protclip"]
    _, offset, feats = term_table(gsd.ontologies, pc.get("text_path"), model=model)
    emb, terms = heldout_term_scores(model, gsd, feats, offset, pc.get("eval_max_len", 1024), parts)
    reference = getattr(model, "transfer_reference", None)
    return emb, terms, (reference.combine_parts(emb, terms, model.search_geometry) if reference is not None
                        else terms)


def check_run_split(run: Any, cfg: dict[str, Any], gsd: GOSplitData) -> None:
    """Refuse to score (or resume) a run on a split other than the one it was trained on: the run's recorded
    :meth:`~hypalign.data.splits.Split.fingerprint` must match ``gsd``'s (runs from before fingerprints were
    recorded get a warning instead)."""
    import warnings

    from hypalign.errors import InputError

    want, name = cfg["protclip"].get("split_fingerprint", ""), cfg["protclip"]["split"]
    have = gsd.split.fingerprint()
    where = gsd.split.path or "the given split"
    if not want:
        warnings.warn(f"{run} records no split fingerprint (trained before they were recorded): make sure "
                      f"{where} is the split it was trained on", stacklevel=2)
    elif want != have:
        raise InputError(f"{run} was trained on split {name} with fingerprint {want}, but {where} has fingerprint "
                         f"{have} (a remade or different split); pass --split with the directory of the split it was "
                         "trained on (an outdated built-in hard split is kept beside it as NAME-v1)")


def evaluate_run(run: Any, part: str = "test", split: str | None = None) -> dict[str, float]:
    """Every GO metric of a trained run on its own split's ``part`` (the split is re-read from its files;
    ``split``: a directory holding that split, when its built-in name now resolves to another)."""
    model, cfg = load_protclip_run(run)
    gsd = prepare_go_split(split or cfg["protclip"]["split"], seed=0)
    check_run_split(run, cfg, gsd)
    return summarise_metrics(gsd, part, run_scores(model, cfg, gsd, (part,))[2][part])


def compare_runs(runs: list[Any], split: str | None = None, threads: int | None = None,
                 say: Any = None, aupr: bool = True, gsd: GOSplitData | None = None) -> dict[str, Any]:
    """Issue 6's table for one split: every trained run's model (term scores + its transfer, as
    ``hypalign predict`` scores), term frequency, DIAMOND, DIAMOND blended with frequency (:func:`run_baselines`)
    and each run's model + DIAMOND (:func:`blend_with_diamond`), all on the split's test proteins with the
    weights chosen on its valid proteins. ``runs`` must share one split (``split`` defaults to theirs;
    with no runs, the baselines of ``split`` alone); ``gsd``: that split already loaded (or made-up data).

    Returns ``{"split", "n_test", "diamond_coverage", "metrics": {method: {ontology: {"fmax", "aupr", "mrr",
    "hits@1", "hits@10", "n_proteins", ...}}}, "subsets": {"no DIAMOND hit": {"n_test", "metrics"}}}`` — the
    subset: the same methods on the test proteins without any DIAMOND hit in train (e <= 1e-3), where homology
    transfer has nothing to give (absent when every test protein has a hit); each ontology counts the proteins
    annotated in it (``n_proteins``). ``aupr=False`` leaves out AUPR, the slowest metric.
    """
    from pathlib import Path

    from hypalign.errors import InputError

    log = say if callable(say) else (lambda msg: None)
    runs = [Path(r) for r in runs]
    cfgs = {str(r): read_run_config(r, "protclip") for r in runs}
    splits = {r: (c["protclip"]["split"], c["protclip"].get("split_fingerprint", "")) for r, c in cfgs.items()}
    if len(set(splits.values())) > 1:
        raise InputError("runs trained on different splits cannot share one table: "
                         + ", ".join(f"{r} ({s}{' ' + f if f else ''})" for r, (s, f) in splits.items()))
    split = split or (next(iter(splits.values()))[0] if runs else "small-hard")
    gsd = gsd if gsd is not None else prepare_go_split(split)
    for r, c in cfgs.items():  # --split may name another directory, but it must hold the runs' split
        check_run_split(r, c, gsd)
    base = run_baselines(gsd, "test", threads=threads, say=say, aupr=aupr)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    test_scores: dict[str, dict[str, np.ndarray]] = {}
    geoms = [cfgs[str(r)]["protclip"]["geometry"] for r in runs]
    for run, geom in zip(runs, geoms, strict=True):
        label = f"model ({geom})" if geoms.count(geom) == 1 else f"model ({geom}, {run.name})"
        log(f"scoring {run} ({label})")
        model, cfg = load_protclip_run(run)
        _, _, scores = run_scores(model, cfg, gsd, ("valid", "test"))
        rows[label] = {o: evaluate_scores(gsd, o, "test", scores["test"][o], fast=not aupr) for o in gsd.ontologies}
        test_scores[label], test_scores[f"{label} + DIAMOND"] = scores["test"], {}
        combined, _ = blend_with_diamond(gsd, base, scores, aupr=aupr, keep_scores=test_scores[f"{label} + DIAMOND"])
        rows[f"{label} + DIAMOND"] = {o: {k.split("/", 1)[1]: v for k, v in combined.items() if k.startswith(o + "/")}
                                      for o in gsd.ontologies}
    model_rows = {k: v for k, v in rows.items() if not k.endswith("+ DIAMOND")}
    ordered = {**model_rows, **base["metrics"], **{k: v for k, v in rows.items() if k.endswith("+ DIAMOND")}}
    no_hit = base["groups"]["test"] < 0
    subsets = {}
    if no_hit.any():  # the same methods on the test proteins DIAMOND finds nothing for
        everything = {**test_scores, **base["scores"]}
        subsets["no DIAMOND hit"] = {"n_test": int(no_hit.sum()), "metrics": subset_metrics(
            gsd, {k: everything[k] for k in ordered}, no_hit, aupr=aupr)}
    return {"split": split, "n_test": len(gsd.rows["test"]), "diamond_coverage": base["coverage"],
            "metrics": ordered, "subsets": subsets}
