"""``hypalign fold``, ``hypalign design``, ``hypalign generate``: a trained DPLM-2 run
(:mod:`hypalign.recipes.dplm2`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hypalign.cli._common import console, print_json, user_errors


def _dplm2_run(run: Path) -> Any:
    from hypalign.errors import InputError
    from hypalign.runs import load_run

    r = load_run(run)
    if r.recipe.name != "dplm2":
        raise InputError(f"{run}: a {r.recipe.name} run; this command needs a dplm2 run")
    return r


STEPS_HELP = "Mask-predict steps (DPLM-2 folds with 100)."


@user_errors
def fold(
    run: Annotated[Path, typer.Argument(help="A dplm2 run directory.")],
    fasta: Annotated[Path, typer.Option(help="Sequences to fold (FASTA).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory for ID.pdb (N, CA, C, O) and tokens.jsonl.")],
    steps: Annotated[int, typer.Option(help=STEPS_HELP, min=1)] = 100,
    skip_invalid: Annotated[bool, typer.Option(help="Skip sequences with non-amino-acid letters or over the model's "
                                                    "length (counted) instead of failing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Fold sequences: structure tokens by greedy mask-predict, decoded by the run's structure tokenizer."""
    from hypalign.recipes.dplm2 import fold_run

    info = fold_run(_dplm2_run(run), fasta, out, steps=steps, skip_invalid=skip_invalid)
    if as_json:
        print_json(info)
    else:
        console.print(f"folded {info['folded']} sequences ({info['skipped']} skipped) -> {out}")


@user_errors
def design(
    run: Annotated[Path, typer.Argument(help="A dplm2 run directory.")],
    files: Annotated[list[Path] | None, typer.Argument(help="PDB / mmCIF files.")] = None,
    pdb: Annotated[list[Path] | None, typer.Option("--pdb", help="A PDB / mmCIF file (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the FASTA here (default: print).")] = None,
    steps: Annotated[int, typer.Option(help=STEPS_HELP, min=1)] = 100,
    chain: Annotated[str | None, typer.Option(help="Only this chain of each file.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip files without a usable backbone and chains over the model's "
                                                    "length instead of failing.")] = False,
) -> None:
    """Inverse folding: a sequence for each chain's backbone (its structure tokens given), as FASTA with the
    recovery of the chain's own sequence in the header."""
    from hypalign.errors import InputError
    from hypalign.io import atomic_write_text
    from hypalign.recipes.dplm2 import design_run

    items = [*(files or []), *(pdb or [])]
    if not items:
        raise InputError("give PDB / mmCIF files (FILES or --pdb)")
    rows = design_run(_dplm2_run(run), items, steps=steps, chain=chain, skip_invalid=skip_invalid)
    text = "".join(f">{cid} recovery={rec:.3f}\n{seq}\n" for cid, seq, rec in rows)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        console.print(f"{len(rows)} designed sequences -> {out}")


@user_errors
def generate(
    run: Annotated[Path, typer.Argument(help="A dplm2 run directory.")],
    length: Annotated[int, typer.Option(help="Residues per protein.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory for gen_K.pdb and generated.fasta.")],
    n: Annotated[int, typer.Option(help="Proteins to generate.", min=1)] = 1,
    steps: Annotated[int, typer.Option(help="Mask-predict steps (DPLM-2 generates with 500).", min=1)] = 100,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Co-generate proteins (structure and sequence together) with DPLM-2's annealed sampling."""
    from hypalign.recipes.dplm2 import generate_run

    info = generate_run(_dplm2_run(run), length, n, out, steps=steps, seed=seed)
    console.print(f"generated {info['generated']} proteins of {length} residues -> {out}")
