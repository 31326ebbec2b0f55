"""``hypalign`` command-line entry point."""

from __future__ import annotations

import typer

from hypalign import __version__
from hypalign.cli.delta import delta
from hypalign.cli.dplm2 import design, fold, generate
from hypalign.cli.evaluate import eval_app
from hypalign.cli.hierarchy import hierarchy_app
from hypalign.cli.index import index_app
from hypalign.cli.protein import protein_app
from hypalign.cli.quickstart import quickstart
from hypalign.cli.recipes import TRAIN_HELP, TrainGroup
from hypalign.cli.train import embed, predict, tokenize

app = typer.Typer(
    name="hypalign",
    help="Hyperbolic multimodal representation learning: geometry, δ-hyperbolicity, training, evaluation, search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# `hypalign train RECIPE`: one subcommand per registered recipe, generated from its configuration when asked for
app.add_typer(typer.Typer(cls=TrainGroup, no_args_is_help=True, help=TRAIN_HELP), name="train")
app.command()(delta)
app.command()(quickstart)
app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval")
app.add_typer(hierarchy_app, name="hierarchy")
app.add_typer(protein_app, name="protein")
app.command()(embed)
app.command()(predict)
app.command()(tokenize)
app.command()(fold)
app.command()(design)
app.command()(generate)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hypalign {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """hypalign command line."""


def main() -> None:
    app(prog_name="hypalign")


if __name__ == "__main__":  # pragma: no cover
    main()
