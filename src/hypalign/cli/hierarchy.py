"""``hypalign hierarchy embed|eval|plot``: kept as aliases of the registry's commands (``hypalign train hierarchy``,
``hypalign eval RUN``) so the README's commands and users' scripts keep working; ``plot`` draws a run."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, user_errors

hierarchy_app = typer.Typer(
    help="Embed a hierarchy (WordNet, Gene Ontology, your edge list) and evaluate or draw it.", no_args_is_help=True
)


class MethodChoice(StrEnum):
    umap = "umap"
    tangent_pca = "tangent-pca"


@hierarchy_app.command("embed", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                       add_help_option=False)
def embed(ctx: typer.Context) -> None:
    """Same as `hypalign train hierarchy --source SOURCE [OPTIONS]` (`hypalign train hierarchy --help` lists them)."""
    from hypalign.cli.recipes import build_train_command
    from hypalign.recipes.registry import get_recipe

    args = list(ctx.args)
    if args and not args[0].startswith("-"):  # the source as the first argument, as before
        args = ["--source", args[0], *args[1:]]
    build_train_command(get_recipe("hierarchy")).main(args, prog_name="hypalign hierarchy embed")


@hierarchy_app.command("eval")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hypalign train hierarchy`.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Same as `hypalign eval RUN`: reconstruction mean rank and MAP (and link prediction if it held edges out)."""
    from hypalign.cli.recipes import eval_run

    eval_run(run, as_json=as_json)


@hierarchy_app.command("plot")
@user_errors
def plot(
    run: Annotated[Path, typer.Argument(help="Run directory written by `hypalign train hierarchy`.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Image file (.png, .pdf, .svg).")],
    method: Annotated[MethodChoice, typer.Option(help="Projection for dim > 2.")] = MethodChoice.umap,
    label_top: Annotated[int, typer.Option(help="Label this many nodes nearest the origin.")] = 25,
    max_points: Annotated[int, typer.Option(help="Draw at most this many nodes (those nearest the origin).")] = 3000,
) -> None:
    """Draw the run's embedding in the Poincaré disk with the top levels labelled."""
    from hypalign.recipes.hierarchy.commands import plot_run

    plot_run(run, out, method.value, label_top, max_points)
    console.print(f"wrote {out}")
