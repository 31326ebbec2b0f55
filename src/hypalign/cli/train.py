"""``hypalign embed RUN INPUTS`` and ``hypalign predict RUN INPUTS``: a finished run of any recipe, through the registry
(:mod:`hypalign.cli.recipes`). ``hypalign train RECIPE`` is generated there from the recipes' configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, print_json, user_errors


@user_errors
def embed(
    run: Annotated[Path, typer.Argument(help="A run directory (hypvit, meru, clip: image files or folders; protclip: "
                                            "FASTA files; hierarchy: node names or files of names, one per line).")],
    inputs: Annotated[list[str], typer.Argument(help="What to embed (see RUN).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Embeddings file (.npy); names/ids go to <out>.txt.")],
    features: Annotated[bool, typer.Option(help="hypvit: dump encoder features (before the head) instead; "
                                                "infoalign: μ, not the alignment head's points.")] = False,
    batch_size: Annotated[int | None, typer.Option(help="hypvit: images per forward pass.", min=1)] = None,
    skip_invalid: Annotated[bool, typer.Option(help="protclip: skip malformed FASTA records (counted) instead of "
                                                    "failing.")] = False,
    texts: Annotated[bool, typer.Option(help="meru, clip: INPUTS are texts (strings, or files of one text per line) "
                                             "instead of images.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Embed inputs with a trained run, in the run's own geometry."""
    from hypalign.cli.recipes import embed_run

    info = embed_run(run, inputs, out, features=features, batch_size=batch_size, skip_invalid=skip_invalid,
                     texts=texts)
    if as_json:
        print_json({"out": str(out), "names": str(out.with_suffix(".txt")), **info})
        return
    geo = info.get("geometry", "?")
    curv = f", c={info['c']}" if info.get("c") is not None else ""
    console.print(f"wrote {out} ({info['n']} x {info['dim']}, geometry {geo}{curv}) and {out.with_suffix('.txt')}")


@user_errors
def predict(
    run: Annotated[Path, typer.Argument(help="A run directory (protclip: ranked GO terms per protein; meru, clip: "
                                            "zero-shot classes per image).")],
    inputs: Annotated[list[str] | None, typer.Argument(help="Input files (protclip: FASTA).")] = None,
    fasta: Annotated[Path | None, typer.Option(help="protclip: a FASTA file (same as giving it as INPUTS).")] = None,
    top: Annotated[int | None, typer.Option(help="protclip: GO terms per protein and ontology (default 20); meru, "
                                                 "clip: classes per image (default 5).", min=1)] = None,
    classes: Annotated[str | None, typer.Option(help="meru, clip: zero-shot class names, comma-separated "
                                                     "(\"cat,dog,bird\").")] = None,
    traverse: Annotated[bool, typer.Option(help="meru: the --classes texts met walking from each image to the origin "
                                                "(MERU's image traversal) instead of the top classes.")] = False,
    ontology: Annotated[list[str] | None, typer.Option(help="protclip: BP, MF, CC (repeatable; default all "
                                                            "three).")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip malformed records, empty sequences and non-amino-acid "
                                                    "letters (counted in a warning) instead of failing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per input (JSON lines).")] = False,
) -> None:
    """Predict with a trained run (ProtCLIP: rank GO terms for each protein of a FASTA file; MERU / CLIP: zero-shot
    classes of images among --classes)."""
    from hypalign.cli.recipes import predict_run

    items = [*(inputs or []), *([str(fasta)] if fasta is not None else [])]
    predict_run(run, items, as_json=json_out, top=top, ontology=ontology, skip_invalid=skip_invalid, classes=classes,
                traverse=traverse)


@user_errors
def tokenize(
    run: Annotated[Path, typer.Argument(help="A structure-tokenizer run directory.")],
    files: Annotated[list[Path] | None, typer.Argument(help="PDB / mmCIF files.")] = None,
    pdb: Annotated[list[Path] | None, typer.Option("--pdb", help="A PDB / mmCIF file (repeatable; same as "
                                                                  "FILES).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the JSON lines here (default: print).")] = None,
    decode: Annotated[Path | None, typer.Option(help="Also write each chain rebuilt from its tokens as PDB into this "
                                                     "directory.")] = None,
    chain: Annotated[str | None, typer.Option(help="Only this chain of each file.")] = None,
) -> None:
    """Structure tokens of protein chains: per chain one JSON line with its id, sequence, tokens (code indices,
    0-8191) and bits (per residue 13 characters of 0/1, bit 0 first)."""
    from hypalign.errors import InputError
    from hypalign.runs import load_run

    r = load_run(run)
    if r.recipe.name != "structure-tokenizer":
        raise InputError(f"{run}: a {r.recipe.name} run; tokenize needs a structure-tokenizer run")
    items = [*(files or []), *(pdb or [])]
    if not items:
        raise InputError("give PDB / mmCIF files (FILES or --pdb)")
    from hypalign.recipes.structok import tokenize_run

    info = tokenize_run(r, items, out, decode, chain, echo=typer.echo)
    if out is not None or decode is not None:
        where = ", ".join(str(p) for p in (out, decode) if p is not None)
        console.print(f"{info['chains']} chains, {info['residues']} residues -> {where}")
