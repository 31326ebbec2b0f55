"""``hypalign eval retrieval``: the metric table of an embedding set in its own geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, fail, print_json, user_errors
from hypalign.cli.index import CurvatureOpt, GeometryOpt, curvature_for

eval_app = typer.Typer(help="Evaluate embeddings (retrieval metrics in their own geometry).", no_args_is_help=True)


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
    c: CurvatureOpt = None,
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
