"""``hypalign protein split|baselines|structures``: Swiss-Prot + GO splits, the function-prediction baselines, and
the packaged PDB backbones with their cluster splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hypalign.cli._common import console, user_errors

protein_app = typer.Typer(help="Protein function data: homology-aware splits and GO prediction baselines.",
                          no_args_is_help=True)

SPLIT_HELP = ("small-random, small-hard, small-nohit, full-random, full-hard, full-nohit, or a directory with "
              "train.txt/valid.txt/test.txt.")


@protein_app.command("split")
@user_errors
def split(
    name: Annotated[str, typer.Argument(help="small-random, small-hard, small-nohit, full-random, full-hard or "
                                              "full-nohit.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write here (default: the cache, "
                                                                   "where --split NAME finds it).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int | None, typer.Option(help="Threads for mmseqs2/DIAMOND (default: all cores).")] = None,
) -> None:
    """Make a split of metastudent-data's Swiss-Prot and write it as files (hard and no-hit splits need mmseqs2 and
    DIAMOND)."""
    from hypalign.data.splits import make_split, split_dir

    dest = out if out is not None else split_dir(name if seed == 0 else f"{name}-seed{seed}")
    s = make_split(name, dest, seed=seed, threads=threads)
    console.print(f"{name}: train {len(s.train)}, valid {len(s.valid)}, test {len(s.test)} -> {dest}")


@protein_app.command("baselines")
@user_errors
def baselines(
    split_: Annotated[str | None, typer.Option("--split", help=SPLIT_HELP + " Default: the runs' split, "
                                                                "else small-hard.")] = None,
    run: Annotated[list[Path] | None, typer.Option("--run", help="A `hypalign train protclip` run to put in the "
                                                                  "table (its model and model + DIAMOND); "
                                                                  "repeat for several.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    threads: Annotated[int | None, typer.Option(help="Threads for DIAMOND (default: all cores).")] = None,
) -> None:
    """Term frequency, DIAMOND transfer and DIAMOND blended with frequency on a split's test proteins; with
    --run, also each trained model and model + DIAMOND (weights chosen on the valid proteins)."""
    from hypalign.recipes.protclip import compare_runs

    say = None if json_out else (lambda m: console.print(m, highlight=False))
    res = compare_runs(run or [], split_, threads=threads, say=say)
    if json_out:
        typer.echo(json.dumps(res, indent=2))
        return
    console.print(_metrics_table(f"{res['split']}: GO prediction on {res['n_test']} test proteins "
                                 f"(DIAMOND hit for {res['diamond_coverage']:.1%})", res["metrics"]))
    for name, sub in res.get("subsets", {}).items():
        console.print(_metrics_table(f"{res['split']}: the {sub['n_test']} test proteins with {name} in train",
                                     sub["metrics"]))


def _metrics_table(title: str, metrics: dict[str, dict[str, dict[str, float]]]) -> object:
    """A rich table: a row per method, ``BP / MF / CC`` per metric (``-`` where an ontology has no annotated test
    protein), and the proteins counted per ontology."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("method")
    for k in ("Fmax", "AUPR", "MRR", "hits@10", "proteins"):
        table.add_column(f"{k} BP / MF / CC", justify="right")

    def cell(per: dict[str, dict[str, float]], k: str) -> str:
        return " / ".join((f"{per[o][k]:.3f}" if k != "n_proteins" else str(per[o][k])) if o in per and k in per[o]
                          else "-" for o in ("BP", "MF", "CC"))

    for method, per in metrics.items():
        table.add_row(method, *(cell(per, k) for k in ("fmax", "aupr", "mrr", "hits@10", "n_proteins")))
    return table


@protein_app.command("structures")
@user_errors
def structures(
    size: Annotated[str, typer.Argument(help="small (~3,000 train / 300 valid / 300 test chains) or full.")] = "small",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write here (default: the cache, where recipes "
                                                                   "find it).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (which clusters go where).")] = 0,
    threads: Annotated[int | None, typer.Option(help="Threads for mmseqs2 (default: all cores).")] = None,
) -> None:
    """Fetch Debian's promod3-data once (21,119 PDB chain backbones), cluster the 40-512-residue chains with
    mmseqs2 (30 % identity) and write a cluster split as files (train.txt / valid.txt / test.txt + split.json)."""
    from hypalign.data.structures import make_structure_split, split_info

    dest = make_structure_split(size, out, seed=seed, threads=threads,
                                say=lambda m: console.print(m, highlight=False))
    info = split_info(dest)
    console.print(f"{size}: train {info['n_train']}, valid {info['n_valid']}, test {info['n_test']} chains "
                  f"({info['n_clusters']} clusters of 40-512 residues) -> {dest}")
