"""``hypalign quickstart``: the main job on embedded defaults (real data from Debian packages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, err_console, print_json, user_errors


@user_errors
def quickstart(
    n: Annotated[
        int, typer.Option(help="Texts per set (GO names, WordNet glosses) and Gaussian points.", min=8)
    ] = 4000,
    samples: Annotated[int, typer.Option(help="Points per δ estimate.", min=4)] = 2000,
    repeats: Annotated[int, typer.Option(help="δ estimates averaged per set.", min=1)] = 5,
    seed: Annotated[int, typer.Option(help="Seed for sampling texts, Gaussian points and δ subsets.")] = 0,
    out: Annotated[Path, typer.Option("-o", "--out", help="Run directory for embeddings and delta.json.")] = Path(
        "runs/quickstart"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """δ-hyperbolicity of real MiniLM embeddings (GO term names, WordNet noun glosses) next to Gaussian points."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from hypalign.cli.delta import render_delta_table
    from hypalign.recipes.delta_survey import run_delta_survey

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
    ) as progress:

        def stage(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=total)
            return lambda k: progress.advance(task, k)

        if not as_json:
            err_console.print(f"[bold]hypalign quickstart[/]: reading GO term names and WordNet glosses, n={n} each")
        result = run_delta_survey(n=n, samples=samples, repeats=repeats, seed=seed, out_dir=out, on_stage=stage)
    if as_json:
        print_json({"results": [{"set": s, **r.to_dict()} for s, r in result.rows], "timings": result.timings})
        return
    render_delta_table(result.rows, title=f"δ-hyperbolicity of MiniLM embeddings (n={n}, {samples} points x {repeats})")
    console.print(
        f"Embeddings and delta.json written to [bold]{out}[/]; e.g. "
        f"`hypalign delta {out / 'go_term_names.npy'} --metric cosine`.\n"
        "Lower δ_rel = more tree-like; suggested c = (0.144/δ_rel)^2 (Hyp-ViT's rule)."
    )
