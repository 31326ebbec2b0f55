"""Generated hierarchies and the hierarchy recipe's default plan: structure of the test bed, the plan's choices,
MAP floors that the defaults must keep on trees and DAGs nobody tuned for, keep-best, resume, the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.data.hierarchy import Hierarchy
from hypalign.data.hierarchy_generators import (
    RULES,
    TEST_BED,
    balanced_tree,
    caterpillar,
    path,
    random_dag,
    random_recursive_tree,
)
from hypalign.eval.hierarchy import reconstruction
from hypalign.geometry import get_geometry
from hypalign.recipes.hierarchy import HierarchyConfig, train_hierarchy
from hypalign.recipes.hierarchy.plan import hierarchy_stats, user_chose_training
from hypalign.recipes.registry import get_recipe

runner = CliRunner()
NAME = re.compile(r"n[0-9a-f]{8}")


def depth_of(h: Hierarchy) -> np.ndarray:
    parents, level = h.parents(), np.zeros(h.n_nodes, dtype=np.int64)
    for v in h.topological_order():
        if parents[v]:
            level[v] = 1 + max(level[p] for p in parents[v])
    return level


def test_generated_shapes_have_their_exact_sizes() -> None:
    b = balanced_tree(3, 3)
    assert b.n_nodes == 40 and len(b.closure()) == 3 * 1 + 9 * 2 + 27 * 3
    p = path(30)
    assert len(p.closure()) == 30 * 29 // 2 and depth_of(p).max() == 29
    c = caterpillar(13, legs=3)  # spine 0-1-2-3, three legs on each of 0, 1, 2
    assert c.n_nodes == 13 and len(c.closure()) == (1 + 2 + 3) + 3 * (1 + 2 + 3)
    assert sorted(np.bincount(c.edges[:, 1]).tolist())[-3:] == [4, 4, 4]
    for name, make in TEST_BED.items():  # the bed's names are what the sweep reports
        h = make(0)
        assert str(h.n_nodes) in name.replace("x", " ").split("-")[-1] or name.startswith("balanced")
    assert all(NAME.fullmatch(n) for n in b.names) and len(set(b.names)) == b.n_nodes


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), rule=st.sampled_from(RULES), seed=st.integers(0, 10**6))
def test_random_recursive_trees_are_trees_with_opaque_shuffled_names(n: int, rule: str, seed: int) -> None:
    h = random_recursive_tree(n, rule, seed)
    parents = h.parents()
    assert h.n_nodes == n and len(h.edges) == n - 1
    assert sum(1 for p in parents if not p) == 1 and all(len(p) <= 1 for p in parents)
    assert len(h.topological_order()) == n  # acyclic
    assert all(NAME.fullmatch(x) for x in h.names) and len(set(h.names)) == n
    assert random_recursive_tree(n, rule, seed).names == h.names  # a function of the seed
    if rule == "recent" and n > 1:  # a parent among the last three made: depth at least (n - 1) / 3
        assert depth_of(h).max() >= (n - 1) / 3


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 300), p=st.floats(0, 1), seed=st.integers(0, 10**6))
def test_random_dags_have_one_or_two_distinct_earlier_parents(n: int, p: float, seed: int) -> None:
    h = random_dag(n, p, seed)
    parents = h.parents()
    assert all(len(ps) == len(set(ps)) <= 2 for ps in parents)
    assert sum(1 for ps in parents if not ps) == 1 and len(h.topological_order()) == n
    if p == 0:
        assert all(len(ps) <= 1 for ps in parents)


def test_dag_multi_parent_share_and_stats_by_hand() -> None:
    stats = hierarchy_stats(random_dag(4000, 0.3, 0))
    assert abs(stats.multi_parent - 0.3) < 0.03  # binomial(3998, 0.3) / 4000: sd 0.007
    h = Hierarchy(["r", "a", "b", "c", "d"], np.array([[1, 0], [2, 0], [3, 1], [3, 2], [4, 3]]))
    s = hierarchy_stats(h)
    assert (s.nodes, s.pairs, s.depth, s.max_children, s.multi_parent, s.roots) == (5, 1 + 1 + 3 + 4, 3, 2, 0.2, 1)


def run_auto(tmp_path: Path, h: Hierarchy, dim: int, name: str, **kw: object) -> dict:
    recipe = get_recipe("hierarchy")
    return recipe.train(recipe.config(source="generated", dim=dim, model="poincare"),
                        recipe.train_config(str(tmp_path / name), progress=False, threads=1, **kw), hierarchy=h)


def test_plan_keeps_an_exact_construction_and_trains_nothing(tmp_path: Path) -> None:
    h = random_recursive_tree(400, "first_half", 0)  # the tree shape
    out = run_auto(tmp_path, h, 5, "rrt")
    assert out["plan"] == "construct" and out["map"] == 1.0 and out["mean_rank"] == 1.0
    assert list(out["stages"]) == ["construct"] and out["epochs"] == 0
    emb = np.load(tmp_path / "rrt" / "embeddings.npy")
    assert emb.dtype == np.float64  # the plan's precision
    plan = json.loads((tmp_path / "rrt" / "plan.json").read_text())
    assert plan["chosen"] == "construct" and plan["stats"]["nodes"] == 400


# MAP floors and mean-rank ceilings the defaults keep, just under what they reach (the stage chosen in brackets):
# a deep random tree (fit), a DAG (refine), a tree in two dimensions (polish), a chain that gensim cannot train (refine)
FLOORS = [("rrt-recent", lambda: random_recursive_tree(100, "recent", 0), 5, 0.98, 1.27),  # 0.985, 1.244
          ("dag", lambda: random_dag(300, 0.3, 0), 5, 0.86, 2.4),  # 0.870, 2.310
          ("rrt-2d", lambda: random_recursive_tree(300, "uniform", 0), 2, 0.88, 1.5),  # 0.889, 1.475
          ("path", lambda: path(60, 0), 5, 0.995, 1.02)]  # 0.9994, 1.015


@pytest.mark.parametrize(("name", "make", "dim", "map_floor", "rank_ceiling"), FLOORS, ids=[f[0] for f in FLOORS])
def test_defaults_keep_their_floors_on_generated_hierarchies(tmp_path: Path, name: str, make, dim: int,
                                                            map_floor: float, rank_ceiling: float) -> None:
    h = make()
    out = run_auto(tmp_path, h, dim, name)
    assert out["plan"] in out["stages"] and list(out["stages"]) == ["construct", "polish", "fit", "refine"]
    assert out["mean_rank"] == min(r["mean_rank"] for r in out["stages"].values())  # the kept candidate
    assert out["map"] >= map_floor and out["mean_rank"] <= rank_ceiling, out
    # the figures are those of the embedding saved at the top of the run
    emb = torch.from_numpy(np.load(tmp_path / name / "embeddings.npy"))
    assert reconstruction(emb, h.ancestors(), get_geometry("poincare"))["map"] == pytest.approx(out["map"], abs=1e-12)


def test_training_keeps_its_best_state_not_its_last(tmp_path: Path) -> None:
    """The issue's failure: lazy Adam at lr 1 from an exact construction destroys it. With the best state kept,
    the saved embedding is the best evaluated one (every evaluation here is on all nodes)."""
    h = random_recursive_tree(200, "first_half", 1)
    recipe = get_recipe("hierarchy")
    cfg = HierarchyConfig(source="g", dim=5, model="poincare", init="combinatorial")
    out = train_hierarchy(cfg, recipe.train_config(str(tmp_path / "r"), epochs=6, eval_every=1, progress=False,
                                                   threads=1, best_metric="map"), hierarchy=h)
    evals = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines() if "eval/map" in x]
    maps = [e["eval/map"] for e in evals]
    assert len(maps) == 6 and maps[-1] < max(maps)  # training did make it worse
    assert out["map"] == pytest.approx(max(maps), abs=1e-12)


def test_plan_resumes_from_its_finished_stages_exactly(tmp_path: Path) -> None:
    h = random_dag(120, 0.3, 2)  # in 2 dimensions the polished construction stays below GOOD_MAP: every stage runs
    first = run_auto(tmp_path, h, 2, "a")
    assert list(first["stages"]) == ["construct", "polish", "fit", "refine"]
    a = np.load(tmp_path / "a" / "embeddings.npy")
    import shutil

    shutil.rmtree(tmp_path / "a" / "stages" / "refine")  # the last stage lost (killed before it began)
    (tmp_path / "a" / "eval.json").unlink()
    again = run_auto(tmp_path, h, 2, "a", resume=True)
    np.testing.assert_array_equal(a, np.load(tmp_path / "a" / "embeddings.npy"))
    assert again["map"] == first["map"] and again["mean_rank"] == first["mean_rank"]


def test_training_options_given_make_one_run_as_given(tmp_path: Path) -> None:
    recipe = get_recipe("hierarchy")
    cfg = recipe.config(source="g")
    assert user_chose_training(cfg, recipe.train_config("x"), recipe.train_defaults) == []
    assert user_chose_training(cfg, recipe.train_config("x", epochs=3, lr=0.5), recipe.train_defaults) == [
        "--epochs", "--lr"]
    assert user_chose_training(recipe.config(source="g", init="hierarchy"), recipe.train_config("x"),
                               recipe.train_defaults) == ["--init"]
    h = balanced_tree(2, 3)
    said: list[str] = []
    out = recipe.train(recipe.config(source="g", dim=3), recipe.train_config(str(tmp_path / "r"), epochs=2,
                                                                             progress=False, threads=1),
                       hierarchy=h, say=said.append)
    assert "plan" not in out and out["epochs"] == 2 and said == ["plan auto: --epochs given, so one run as given"]
    assert not (tmp_path / "r" / "stages").exists()


def test_cli_default_plan_on_a_users_edge_list_and_eval(tmp_path: Path) -> None:
    h = random_dag(80, 0.3, 5)
    edges = tmp_path / "edges.tsv"
    edges.write_text("".join(f"{h.names[c]}\t{h.names[p]}\n" for c, p in h.edges.tolist()))
    r = runner.invoke(app, ["train", "hierarchy", "--source", f"file:{edges}", "--dim", "3", "--model", "poincare",
                            "-o", str(tmp_path / "run"), "--threads", "1", "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    assert "plan auto: 80 nodes" in r.output
    res = json.loads((tmp_path / "run" / "eval.json").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["recipe"] == "hierarchy" and cfg["plan"]["chosen"] == res["plan"]
    e = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert e.exit_code == 0, e.output
    assert json.loads(e.stdout)["map"] == pytest.approx(res["map"], abs=1e-12)
