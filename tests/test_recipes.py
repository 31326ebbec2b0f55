"""The recipe architecture: the registry, the generated `hypalign train RECIPE` (shared trainer options, --config,
--set, --w-NAME), `hypalign eval|embed|predict RUN` through the run's recipe, pluggable objectives (MERU's
{contrastive, entailment} on two towers with no new plumbing), rank sharding and the epoch hook of the trainer."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from hypalign.cli.main import app
from hypalign.errors import InputError
from hypalign.recipes.registry import get_recipe, recipe_names
from hypalign.train import TrainConfig

runner = CliRunner()


def _tree(tmp_path: Path) -> Path:
    """A small tree as a child<TAB>parent edge list: root -> a, b; a -> a1, a2; b -> b1, b2, b3."""
    f = tmp_path / "tree.tsv"
    f.write_text("a\troot\nb\troot\na1\ta\na2\ta\nb1\tb\nb2\tb\nb3\tb\n")
    return f


def test_registry_knows_every_recipe_and_refuses_others() -> None:
    assert {"hypvit", "hierarchy", "protclip"} <= set(recipe_names())
    for name in ("hypvit", "hierarchy", "protclip"):
        r = get_recipe(name)
        assert r.name == name and dataclasses.is_dataclass(r.config) and callable(r.train) and r.evaluate is not None
    with pytest.raises(InputError, match="unknown recipe 'meru2'; expected one of"):
        get_recipe("meru2")


def test_every_recipe_offers_the_same_trainer_options() -> None:
    """The trainer's options are declared once (TrainConfig) and every recipe's command has all of them."""
    flags = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)
             if f.metadata.get("cli", True)} - {"--run-dir"}
    for name in ("hypvit", "hierarchy", "protclip"):
        r = runner.invoke(app, ["train", name, "--help"], terminal_width=200)
        assert r.exit_code == 0, r.output
        missing = [f for f in flags if f not in r.output]
        assert not missing, f"{name}: {missing}"
        assert "--config" in r.output and "--set" in r.output and "--out" in r.output


def _train_tree(tmp_path: Path, name: str, *extra: str) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / name
    r = runner.invoke(app, ["train", "hierarchy", "--source", f"file:{_tree(tmp_path)}", "-o", str(out),
                            "--epochs", "2", "--no-progress", "--json", *extra])
    assert r.exit_code == 0, r.output
    return r, json.loads((out / "config.json").read_text())


def test_config_file_flags_and_set_in_that_order(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("train:\n  lr: 0.5\n  seed: 3\nhierarchy:\n  dim: 3\n  negatives: 4\n"
                                     "batch_size: 8\n")
    _, cfg = _train_tree(tmp_path, "a", "--config", str(tmp_path / "c.yaml"))
    assert (cfg["train"]["lr"], cfg["train"]["seed"], cfg["hierarchy"]["dim"], cfg["hierarchy"]["negatives"],
            cfg["hierarchy"]["batch_size"]) == (0.5, 3, 3, 4, 8)
    # a flag typed wins over the file; --set wins over both; defaults the file does not touch stay the recipe's
    _, cfg = _train_tree(tmp_path, "b", "--config", str(tmp_path / "c.yaml"), "--dim", "4", "--set", "seed=7",
                         "--set", "train.lr=0.25")
    assert (cfg["hierarchy"]["dim"], cfg["train"]["seed"], cfg["train"]["lr"]) == (4, 7, 0.25)
    assert cfg["train"]["optimizer"] == "sparse_adam" and cfg["train"]["burnin_epochs"] == 10  # the recipe's
    # the same values through the Python API give the same run (the CLI only assembles the configs)
    from hypalign.recipes.hierarchy import HierarchyConfig

    assert cfg["hierarchy"] == dataclasses.asdict(HierarchyConfig(**cfg["hierarchy"]))


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "dim"], "--set 'dim': expected key=value"),
    (["--set", "dim=2.5"], "dim: expected an integer, got 2.5"),
    (["--set", "train.nope=1"], "train.nope: train has no option 'nope'"),
    (["--set", "meru.dim=1"], "meru.dim: unknown section 'meru'"),
    (["--model", "hyperboloid"], "--model 'hyperboloid': expected one of lorentz, poincare, euclidean"),
    (["--set", "lr=-1"], "lr > 0"),
    (["--config", "MISSING"], "cannot read"),
    (["--config", "BAD"], "BAD: line 2 not valid YAML"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "BAD").write_text("a: [1,\n")
    args = [str(tmp_path / a) if a in ("MISSING", "BAD") else a for a in args]
    r = runner.invoke(app, ["train", "hierarchy", "--source", f"file:{_tree(tmp_path)}", "-o", str(tmp_path / "r"),
                            "--no-progress", *args])
    assert r.exit_code == 2 and message in r.output and r.output.count("\n") == 1, r.output


def test_a_required_recipe_option_may_come_from_the_config_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "hierarchy", "-o", str(tmp_path / "r"), "--no-progress"])
    assert r.exit_code == 2 and "recipe hierarchy: --source is required" in r.output
    (tmp_path / "c.yaml").write_text(f"source: file:{_tree(tmp_path)}\nepochs: 1\n")
    r = runner.invoke(app, ["train", "hierarchy", "-o", str(tmp_path / "r"), "--config", str(tmp_path / "c.yaml"),
                            "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["epochs"] == 1


def test_old_commands_stay_as_aliases(tmp_path: Path) -> None:
    """`hypalign hierarchy embed SOURCE` = `hypalign train hierarchy --source SOURCE` (same run, same numbers)."""
    src = f"file:{_tree(tmp_path)}"
    common = ["-o", "OUT", "--epochs", "3", "--dim", "3", "--negatives", "4", "--no-progress", "--json"]
    a = runner.invoke(app, ["hierarchy", "embed", src, *[str(tmp_path / "a") if x == "OUT" else x for x in common]])
    b = runner.invoke(app, ["train", "hierarchy", "--source", src,
                            *[str(tmp_path / "b") if x == "OUT" else x for x in common]])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ea, eb = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("a", "b"))
    assert {k: v for k, v in ea.items() if not k.endswith("seconds")} == \
        {k: v for k, v in eb.items() if not k.endswith("seconds")}
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "embeddings.npy"),
                                  np.load(tmp_path / "b" / "embeddings.npy"))
    r = runner.invoke(app, ["hierarchy", "eval", str(tmp_path / "a"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["map"] == pytest.approx(ea["map"], abs=1e-12)


def test_eval_embed_predict_go_through_the_runs_recipe(tmp_path: Path) -> None:
    _train_tree(tmp_path, "h", "--dim", "3", "--link-prediction", "0.3")
    run = tmp_path / "h"
    saved = json.loads((run / "eval.json").read_text())
    r = runner.invoke(app, ["eval", str(run), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    for k in ("map", "mean_rank", "lp_map", "lp_mean_rank"):  # the same numbers as at the end of training
        assert got[k] == pytest.approx(saved[k], abs=1e-12), k
    # embed: the rows of the named nodes, names from arguments or from a file
    (tmp_path / "names.txt").write_text("b2\nroot\n")
    r = runner.invoke(app, ["embed", str(run), "a1", str(tmp_path / "names.txt"), "-o", str(tmp_path / "e.npy")])
    assert r.exit_code == 0, r.output
    names = (run / "names.txt").read_text().splitlines()
    table = np.load(run / "embeddings.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), table[[names.index(n) for n in ("a1", "b2", "root")]])
    assert (tmp_path / "e.txt").read_text() == "a1\nb2\nroot\n"
    # what the recipe does not offer is a one-line error naming it
    for args, msg in ((["predict", str(run), "x"], "recipe hierarchy has no predict (`hypalign predict` works on "
                                                   "runs of: clip, meru, protclip)"),
                      (["eval", str(run), "--split", "s"], "recipe hierarchy does not support --split for evaluate"),
                      (["embed", str(run), "nope", "-o", str(tmp_path / "x.npy")], "node 'nope' is not in the run's"),
                      (["eval", str(tmp_path)], "no config.json")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and msg in r.output and r.output.count("\n") == 1, r.output
    # the Python side: one loader for every run
    from hypalign.runs import load_run

    loaded = load_run(run)
    assert loaded.recipe_name == "hierarchy" and loaded.eval_json()["map"] == saved["map"]
    np.testing.assert_array_equal(loaded.load_model().points().numpy(), table)
    assert torch.equal(loaded.load_model("latest").points(), torch.from_numpy(table))  # the last checkpoint = final


def test_recipes_leave_the_train_config_they_are_given_alone(tmp_path: Path) -> None:
    from hypalign.data.hierarchy import read_edge_list
    from hypalign.recipes.hierarchy import HierarchyConfig, train_hierarchy

    tc = TrainConfig(run_dir=str(tmp_path / "r"), epochs=1, optimizer="adam", progress=False)
    before = dataclasses.replace(tc)
    train_hierarchy(HierarchyConfig(source="file", dim=3, negatives=4), tc, hierarchy=read_edge_list(_tree(tmp_path)))
    assert tc == before
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (saved["optimizer"], saved["threads"], saved["device"]) == ("sparse_adam", 1, "cpu")  # what ran


# ---- objectives -------------------------------------------------------------------------------------------------
def test_parse_objectives() -> None:
    from hypalign.objectives import ObjectiveSpec, format_objectives, parse_objectives

    menu = {"a": ObjectiveSpec("contrastive", 1.0), "b": ObjectiveSpec("entailment", 0.2, general="x", specific="y")}
    assert parse_objectives("a, b:0.5", menu) == {"a": None, "b": 0.5}
    assert parse_objectives("both:2", menu, {"both": ("a", "b")}) == {"a": 2.0, "b": 2.0}
    assert format_objectives({"a": 1.0, "b": 0.25}) == "a:1,b:0.25"
    for bad, msg in (("c", "objective 'c': expected any of a, b"), ("a:-1", "must be >= 0"),
                     ("a:x", "must be a number")):
        with pytest.raises(InputError, match=msg):
            parse_objectives(bad, menu)


class _TwoTowers(nn.Module):
    """The shape of MERU: image and text towers lifted into one Lorentz space, a learnable CLIP temperature."""

    def __init__(self) -> None:
        super().__init__()
        from hypalign.geometry import Lorentz

        self.image, self.text = nn.Linear(6, 4), nn.Linear(5, 4)
        self.geometry = Lorentz(1.0)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"image": self.geometry.expmap0(self.image(batch["pixels"])),
                "text": self.geometry.expmap0(self.text(batch["tokens"]))}


def test_meru_is_contrastive_plus_entailment_on_two_towers_with_no_new_plumbing() -> None:
    from hypalign.losses.contrastive import clip_loss, entailment_loss
    from hypalign.objectives import ObjectiveSet, ObjectiveSpec, parse_objectives

    menu = {"contrastive": ObjectiveSpec("contrastive", 1.0, a="image", b="text"),
            "entailment": ObjectiveSpec("entailment", 0.2, general="text", specific="image")}
    objs = ObjectiveSet.from_menu(menu, parse_objectives("contrastive,entailment", menu))
    torch.manual_seed(0)
    model = _TwoTowers()
    batch = {"pixels": torch.randn(8, 6), "tokens": torch.randn(8, 5)}
    out = model(batch)
    got = objs(out, batch, model)
    want_c = clip_loss(out["image"], out["text"], model.geometry, model.logit_scale)
    want_e = entailment_loss(out["text"], out["image"], model.geometry)
    assert float(got["contrastive"]) == pytest.approx(float(want_c.detach()), rel=1e-6)
    assert float(got["entailment"]) == pytest.approx(float(want_e.detach()), rel=1e-6)
    assert float(got["loss"].detach()) == pytest.approx(float((want_c + 0.2 * want_e).detach()), rel=1e-6)
    got["loss"].backward()  # gradients reach both towers and the temperature
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
    assert objs.outputs == {"image", "text"} and objs.names == ("contrastive", "entailment")
    # a user-registered kind plugs in the same way
    from hypalign.objectives import Objective, register_objective

    @register_objective("test_norm_penalty")
    class NormPenalty(Objective):
        def __init__(self, weight: float = 1.0, key: str = "image") -> None:
            super().__init__(weight, key=key)
            self.key, self.outputs = key, (key,)

        def compute(self, outputs: Any, batch: Any, model: nn.Module) -> torch.Tensor:
            return outputs[self.key].norm(dim=-1).mean()

    menu["norm"] = ObjectiveSpec("test_norm_penalty", 0.5)
    more = ObjectiveSet.from_menu(menu, parse_objectives("contrastive,norm:0.1", menu))
    res = more(out, batch, model)
    want = want_c + 0.1 * out["image"].norm(dim=-1).mean()
    assert float(res["loss"].detach()) == pytest.approx(float(want.detach()), rel=1e-6)


# ---- trainer: sharding and the epoch hook ----------------------------------------------------------------------
def test_shard_batches_deals_whole_rounds() -> None:
    from hypalign.train import shard_batches

    specs = list(range(11))
    assert shard_batches(specs, 0, 1) == specs
    assert shard_batches(specs, 0, 3) == [0, 3, 6] and shard_batches(specs, 2, 3) == [2, 5, 8]  # 9, 10: dropped
    assert sorted(x for r in range(2) for x in shard_batches(specs, r, 2)) == list(range(10))


def test_on_epoch_start_runs_once_per_epoch_also_after_resume(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from hypalign.train import Trainer
    from toy_task import ToyTask, config

    class Hooked(ToyTask):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[int, int]] = []

        def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
            self.calls.append((epoch, len(self.calls)))

    t = Hooked()
    Trainer(t, config(str(tmp_path / "a"), epochs=3)).fit()
    assert [e for e, _ in t.calls] == [0, 1, 2]

    class Crash(Hooked):  # killed during step 21 (mid epoch 1), after the checkpoint of step 20
        def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
            self.n = getattr(self, "n", 0) + 1
            if self.n == 21:
                raise KeyboardInterrupt
            return super().loss(model, batch)

    t2 = Crash()
    with pytest.raises(KeyboardInterrupt):
        Trainer(t2, config(str(tmp_path / "b"), epochs=3, save_every=4)).fit()
    t3 = Hooked()
    Trainer(t3, config(str(tmp_path / "b"), epochs=3, save_every=4, resume=True)).fit()
    assert [e for e, _ in t2.calls] == [0, 1] and [e for e, _ in t3.calls] == [1, 2]
    for a, b in zip(t.model.parameters(), t3.model.parameters(), strict=True):  # and the resume is exact
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_library_starts_from_the_command_lines_defaults(tmp_path: Path) -> None:
    """`Recipe.train_config` = what `hypalign train NAME` assembles with no options (issue 29: no defaults that
    differ between the library call and the CLI)."""
    from hypalign.cli.recipes import build_train_command, train_config_values

    for name in ("hypvit", "hierarchy", "protclip"):
        recipe = get_recipe(name)
        cmd = build_train_command(recipe)
        params = {p.name: p.default for p in cmd.params if p.name}
        params.update({"t_run_dir": str(tmp_path), "r_source": "wordnet:mammal.n.01"} if name == "hierarchy"
                      else {"t_run_dir": str(tmp_path)})
        cfg, train = train_config_values(recipe, params, set(), None, (), {})
        assert train == recipe.train_config(str(tmp_path)), name
        want = recipe.config(**({"source": "wordnet:mammal.n.01"} if name == "hierarchy" else {}))
        assert cfg == want, name
