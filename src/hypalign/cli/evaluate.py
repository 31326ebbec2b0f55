"""``hypalign eval retrieval``: the metric table of an embedding set in its own geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from hypalign.cli._common import console, fail, print_json, user_errors
from hypalign.cli.index import CurvatureOpt, GeometryOpt, curvature_for


class _EvalGroup(TyperGroup):
    """``hypalign eval RUN`` is short for ``hypalign eval run RUN`` (a run directory, not a subcommand)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


eval_app = typer.Typer(
    cls=_EvalGroup,
    help="Evaluate a run directory (`hypalign eval RUN`) or embedding files (`hypalign eval retrieval`).",
    no_args_is_help=True,
)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        fail(f"--k must be comma-separated positive integers, got {text!r}")
    if not ks or ks[0] < 1:
        fail(f"--k must be comma-separated positive integers, got {text!r}")
    return ks


@eval_app.command("retrieval")
@user_errors
def retrieval(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings (queries = gallery, query excluded).")],
    labels: Annotated[Path, typer.Argument(help="Labels: .npy or a text file, one per row.")],
    geometry: GeometryOpt,
    c: CurvatureOpt = 1.0,
    k: Annotated[str, typer.Option("--k", help="Comma-separated K for Recall@K.")] = "1,2,4,8",
    mrr_all: Annotated[bool, typer.Option(help="Also MRR over all positives (filtered; sorts full rows).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object keyed by metric name.")] = False,
) -> None:
    """Recall@K, precision@1, R-precision, MAP@R and MRR, ranking by geodesic distance."""
    from hypalign.eval.retrieval import retrieval_metrics
    from hypalign.geometry import get_geometry
    from hypalign.io import check_on_manifold, load_embeddings, load_labels

    ks = _parse_ks(k)
    x = load_embeddings(embeddings)
    y = load_labels(labels, expected=len(x))
    curv = curvature_for(geometry.value, c)
    check_on_manifold(x, geometry.value, curv, str(embeddings))
    geo = get_geometry(geometry.value, c=curv)
    import torch

    result = retrieval_metrics(torch.from_numpy(x).float(), y, geo, ks=ks, mrr_all=mrr_all)
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    table = Table(
        title=f"retrieval ({geometry.value}" + (f", c={curv:g}" if c else "") + f", {result['n_queries']} queries)"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.items():
        if not name.startswith("n_"):
            table.add_row(name, f"{value:.4f}")
    console.print(table)
    if result["n_queries_without_relevant"]:
        console.print(f"{result['n_queries_without_relevant']} queries had no other item with their label (left out).")


@eval_app.command("run")
@user_errors
def run(
    run_dir: Annotated[Path, typer.Argument(help="A run directory of any recipe.")],
    which: Annotated[str | None, typer.Option(help="hypvit: model (final), latest or best checkpoint.")] = None,
    features_out: Annotated[Path | None, typer.Option(help="hypvit: also write the test split's encoder features "
                                                           "(.npy) for `hypalign delta`.")] = None,
    embeddings_out: Annotated[Path | None, typer.Option(help="hypvit: also write the test embeddings (.npy).")] = None,
    plot: Annotated[Path | None, typer.Option(help="hypvit, hierarchy: draw the embeddings in the Poincaré disk "
                                                   "(.png).")] = None,
    split: Annotated[str | None, typer.Option(help="protclip: the directory of the split the run was trained on, "
                                                   "when its built-in name now resolves to another (fingerprints "
                                                   "must match). infoalign with --property: scaffold (default) or "
                                                   "random.")] = None,
    property_file: Annotated[Path | None, typer.Option("--property", help="infoalign: a CSV/TSV with a smiles "
                                                       "column and label columns; the paper's head is trained on the "
                                                       "frozen representation (3 seeds) and scored on its test "
                                                       "part.")] = None,
    target: Annotated[str | None, typer.Option(help="infoalign --property: the label column(s), comma-separated "
                                                    "(default: every column but smiles).")] = None,
    task: Annotated[str | None, typer.Option(help="infoalign --property: regression or classification (default: "
                                                  "classification when every label is 0/1).")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="infoalign --property: skip rows with an unparsable SMILES "
                                                    "(counted) instead of failing.")] = False,
    finetune: Annotated[bool, typer.Option(help="infoalign --property: fine-tune the pre-trained encoder with the "
                                                "head (encoder at a tenth of the head's learning rate) instead of "
                                                "freezing it.")] = False,
    part: Annotated[str | None, typer.Option(help="protclip: valid or test (default test).")] = None,
    data: Annotated[Path | None, typer.Option(help="meru, clip: a dataset directory (images + captions.jsonl) to "
                                                   "evaluate on (default: the run's test set).")] = None,
    level: Annotated[int | None, typer.Option(help="meru, clip: zero-shot classes at this tree level only (0 the "
                                                   "coarsest, -1 the leaf; default every level).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Evaluate a trained run with its recipe's evaluator: Recall@K and MAP@R on the held-out classes (hypvit),
    reconstruction and link prediction (hierarchy), GO Fmax/AUPR/MRR on the split's test proteins (protclip),
    zero-shot classification at every tree level, cross-modal Recall@K and tree metrics (meru, clip). An option the
    run's recipe does not read is refused with a one-line error."""
    from hypalign.cli.recipes import eval_run

    eval_run(run_dir, as_json=as_json, which=which, features_out=features_out, embeddings_out=embeddings_out,
             plot=plot, split=split, part=part, data=data, level=level,
             property=str(property_file) if property_file is not None else None, target=target, task=task,
             skip_invalid=skip_invalid, finetune=finetune)
