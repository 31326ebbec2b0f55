"""``hypalign index build|search``: exact hyperbolic nearest-neighbour search from disk."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import err_console, fail, print_json, user_errors

index_app = typer.Typer(help="Build and search nearest-neighbour indexes in any geometry.", no_args_is_help=True)


class GeometryChoice(StrEnum):
    lorentz = "lorentz"
    poincare = "poincare"
    sphere = "sphere"
    euclidean = "euclidean"


GeometryOpt = Annotated[GeometryChoice, typer.Option(help="Geometry of the embeddings.")]
CurvatureOpt = Annotated[float, typer.Option(help="Curvature magnitude c (curvature -c) for lorentz/poincare; 1.0 by "
                                                  "default, as everywhere in hypalign (ignored by sphere and "
                                                  "euclidean).")]


@index_app.command("build")
@user_errors
def build(
    embeddings: Annotated[Path, typer.Argument(help="Gallery embeddings (.npy, .pt, .safetensors, .parquet, .csv).")],
    geometry: GeometryOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Index directory to write.")],
    c: CurvatureOpt = 1.0,
    ids: Annotated[Path | None, typer.Option(help="Text file with one id per embedding row.")] = None,
    hnsw: Annotated[bool, typer.Option(help="Also build an HNSW graph for approximate search.")] = False,
) -> None:
    """Validate the embeddings as points of GEOMETRY and write an index directory."""
    from hypalign.io import load_embeddings, load_labels
    from hypalign.search.index import build_index

    x = load_embeddings(embeddings)
    id_list = list(load_labels(ids, expected=len(x))) if ids is not None else None
    meta = build_index(x, geometry.value, out, c=c, ids=id_list, hnsw=hnsw, source=str(embeddings))
    err_console.print(
        f"index: {meta.count} points, dim {meta.dim}, {meta.geometry}"
        + (f" (c={meta.c:g})" if meta.c is not None else "")
        + (", with HNSW" if meta.hnsw else "")
        + f" -> {out}"
    )


@index_app.command("search")
@user_errors
def search(
    index_dir: Annotated[Path, typer.Argument(help="Index directory from `hypalign index build`.")],
    queries: Annotated[Path, typer.Argument(help="Query embeddings, same geometry and dimension.")],
    k: Annotated[int, typer.Option("-k", help="Neighbours per query.", min=1)] = 10,
    approximate: Annotated[bool, typer.Option(help="Use the HNSW graph (index built with --hnsw).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of CSV.")] = False,
) -> None:
    """k nearest gallery ids and geodesic distances per query (CSV: query,rank,id,distance)."""
    from hypalign.io import load_embeddings
    from hypalign.search.index import SearchIndex

    q = load_embeddings(queries)
    index = SearchIndex.open(index_dir, dim=q.shape[1])
    dist, idx = index.search(q, k=k, approximate=approximate, source=str(queries))
    if as_json:
        rows = []
        for i, (dr, ir) in enumerate(zip(dist, idx, strict=True)):
            hits = [{"id": index.ids[j], "distance": float(d)} for d, j in zip(dr, ir, strict=True) if j >= 0]
            rows.append({"query": i, "neighbors": hits})
        print_json(rows)
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["query", "rank", "id", "distance"])
    for i, (dr, ir) in enumerate(zip(dist, idx, strict=True)):
        for r, (d, j) in enumerate(zip(dr, ir, strict=True), start=1):
            if j >= 0:
                writer.writerow([i, r, index.ids[j], f"{d:.6g}"])


def curvature_for(geometry: str, c: float | None) -> float:
    """The curvature to use (1.0 unless given), failing clearly on a non-positive one for a curved geometry."""
    if geometry in ("lorentz", "poincare"):
        c = 1.0 if c is None else c
        if not c > 0:
            fail(f"--geometry {geometry} needs --c > 0, got {c}")
        return float(c)
    return 1.0
