"""What ``hypalign eval|embed|predict RUN`` do with a ProtCLIP run (the recipe's registry entry points)."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from hypalign.errors import InputError
from hypalign.runs import Run


def _read_fasta_inputs(inputs: list[str], skip_invalid: bool, say: Any) -> tuple[list[str], list[str]]:
    from hypalign.data.protein import read_fasta

    if not inputs:
        raise InputError("no input: give one or more FASTA files")
    ids: list[str] = []
    seqs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for f in inputs:
            i, s = read_fasta(f, skip_invalid=skip_invalid)
            ids += i
            seqs += s
    for w in caught:
        say(f"warning: {w.message}")
    return ids, seqs


def evaluate(run: Run, split: str | None = None, part: str = "test", **_: Any) -> dict[str, Any]:
    """Every GO metric of the run (term scores + its transfer, as ``predict`` scores) on its split's ``part``."""
    from hypalign.recipes.protclip.run import evaluate_run

    if part not in ("valid", "test"):
        raise InputError(f"part {part!r}: expected valid or test")
    return evaluate_run(run.path, part=part, split=split)


def predict(run: Run, inputs: list[str], top: int = 20, ontology: list[str] | None = None,
            skip_invalid: bool = False, as_json: bool = False, echo: Any = print, say: Any = print) -> None:
    """Rank GO terms for each protein of the FASTA files: a block per protein, or JSON lines."""
    from hypalign.data.protein import ONTOLOGIES
    from hypalign.recipes.protclip.run import load_protclip_run, predict_go

    onts = tuple(o.upper() for o in (ontology or ONTOLOGIES))
    bad = [o for o in onts if o not in ONTOLOGIES]
    if bad:
        raise InputError(f"--ontology {bad[0]!r}: expected BP, MF or CC")
    ids, seqs = _read_fasta_inputs(inputs, skip_invalid, say)
    model, cfg = load_protclip_run(run.path)
    t = time.perf_counter()
    preds = predict_go(model, cfg, seqs, top=top, ontologies=onts)
    dt = time.perf_counter() - t
    for pid, row in zip(ids, preds, strict=True):
        if as_json:
            echo(json.dumps({"id": pid, **{o: [{"term": t_, "name": n, "score": round(s, 5)} for t_, n, s in terms]
                                           for o, terms in row.items()}}))
        else:
            echo(f"{pid}")
            for o, terms in row.items():
                echo(f"  {o}: " + "; ".join(f"{t_} {n} ({s:.3f})" for t_, n, s in terms))
    say(f"{len(ids)} proteins in {dt:.1f} s ({len(ids) / max(dt, 1e-9):.0f} proteins/s)")


def embed(run: Run, inputs: list[str], out: Path, skip_invalid: bool = False, say: Any = print,
          **_: Any) -> dict[str, Any]:
    """Protein embeddings on the model's manifold (``out``, .npy) and their ids (``out`` with .txt)."""
    import numpy as np

    from hypalign.io import atomic_write_text, save_npy
    from hypalign.recipes.protclip.run import load_protclip_run
    from hypalign.recipes.protclip.scoring import embed_proteins

    ids, seqs = _read_fasta_inputs(inputs, skip_invalid, say)
    model, cfg = load_protclip_run(run.path)
    emb = embed_proteins(model, seqs, cfg["protclip"].get("eval_max_len", 1024)).numpy().astype(np.float32)
    save_npy(out, emb)
    atomic_write_text(Path(out).with_suffix(".txt"), "".join(f"{i}\n" for i in ids))
    return {"n": len(ids), "dim": int(emb.shape[1]), "geometry": cfg["protclip"]["geometry"],
            "c": cfg["protclip"]["c"]}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    flat = {"epochs": result["epochs"], "steps": result["steps"], "train_seconds": result["train_seconds"]}
    for part in ("valid", "test"):
        flat.update({f"{part}/{k}": v for k, v in result.get(part, {}).items()})
    return flat
