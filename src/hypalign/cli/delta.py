"""``hypalign delta``: δ-hyperbolicity of an embedding file."""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, err_console, fail, print_json, user_errors


class MetricChoice(StrEnum):
    euclidean = "euclidean"
    cosine = "cosine"
    poincare = "poincare"
    lorentz = "lorentz"


class MethodChoice(StrEnum):
    basepoint = "basepoint"
    exact = "exact"


def _fmt(mean: float, std: float, repeats: int) -> str:
    return f"{mean:.4g} ± {std:.1g}" if repeats > 1 else f"{mean:.4g}"


def render_delta_table(rows: list[tuple[str, object]], title: str) -> None:
    """Print δ results as a rich table: one row per (label, DeltaResult)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("set", "metric", "method", "points", "δ", "δ_rel", "diameter", "suggested c"):
        table.add_column(col, justify="left" if col in ("set", "metric", "method") else "right", no_wrap=True)
    for label, r in rows:
        table.add_row(
            label,
            r.metric + (f" (c={r.c:g})" if r.c is not None else ""),  # type: ignore[attr-defined]
            r.method,  # type: ignore[attr-defined]
            f"{r.n}/{r.n_total}" + (f" x{r.repeats}" if r.repeats > 1 else ""),  # type: ignore[attr-defined]
            _fmt(r.delta, r.delta_std, r.repeats),  # type: ignore[attr-defined]
            _fmt(r.delta_rel, r.delta_rel_std, r.repeats),  # type: ignore[attr-defined]
            _fmt(r.diameter, r.diameter_std, r.repeats),  # type: ignore[attr-defined]
            "inf (tree)" if math.isinf(r.c_suggested) else f"{r.c_suggested:.4g}",  # type: ignore[attr-defined]
        )
    console.print(table)


@user_errors
def delta(
    file: Annotated[Path, typer.Argument(help="Embeddings: .npy, .pt, .safetensors, .parquet or .csv (n x D).")],
    metric: Annotated[MetricChoice, typer.Option(help="Distance between the points.")] = MetricChoice.euclidean,
    c: Annotated[float, typer.Option(help="Curvature magnitude for poincare/lorentz (curvature -c).")] = 1.0,
    method: Annotated[
        MethodChoice, typer.Option(help="basepoint: Gromov products at one point (Hyp-ViT); exact: four-point δ.")
    ] = MethodChoice.basepoint,
    samples: Annotated[
        int | None, typer.Option(help="Points per estimate; >= n (or unset) uses every point once.", min=4)
    ] = 2000,
    repeats: Annotated[int, typer.Option(help="Random subsets of --samples points to average over.", min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the subset draws.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """δ-hyperbolicity of a point set: δ, relative δ = 2δ/diameter, and the curvature c = (0.144/δ_rel)^2."""
    from hypalign.eval.delta import delta_hyperbolicity, sampling_plan
    from hypalign.io import check_on_manifold, load_embeddings

    if not (math.isfinite(c) and c > 0):
        fail(f"--c must be a finite number > 0, got {c}")
    x = load_embeddings(file)
    if x.shape[0] < 4:
        fail(f"{file}: δ needs at least 4 points, found {x.shape[0]}")
    check_on_manifold(x, metric.value, c, str(file))
    n_used, n_rep = sampling_plan(x.shape[0], samples, repeats)
    kwargs = dict(metric=metric.value, c=c, method=method.value, samples=samples, repeats=repeats, seed=seed)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("δ on {task.fields[n]} points"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("delta", total=n_rep, n=n_used)
        result = delta_hyperbolicity(x, **kwargs, on_repeat=lambda _r: progress.advance(task))  # type: ignore[arg-type]
    if as_json:
        out = result.to_dict()
        out["file"] = str(file)
        print_json(out)
    else:
        render_delta_table([(Path(file).name, result)], title="δ-hyperbolicity")
