"""Hierarchy embedding recipe (Nickel & Kiela 2017 Poincaré embeddings; 2018 Lorentz model): :mod:`.task` (its
configuration, task and training), :mod:`.commands` (eval, embed, model loading). See :mod:`.task` for the method."""

from hypalign.recipes.hierarchy import commands
from hypalign.recipes.hierarchy.runfiles import load_run, save_embeddings
from hypalign.recipes.hierarchy.task import HierarchyConfig, HierarchyTask, train_hierarchy
from hypalign.recipes.registry import Recipe

RECIPE = Recipe(
    name="hierarchy",
    summary="Hierarchy embedding of WordNet, GO or your edge list (Nickel & Kiela 2017/2018).",
    config=HierarchyConfig,
    train=lambda cfg, train, say=None, hierarchy=None: train_hierarchy(cfg, train, hierarchy, say),
    load_model=commands.load_model,
    evaluate=commands.evaluate,
    embed=commands.embed,
    train_defaults={"epochs": 150, "lr": 1.0, "optimizer": "adam", "schedule": "constant", "burnin_epochs": 10,
                    "eval_every": 0, "log_every": 20, "save_interval_s": 30.0, "weight_decay": 0.0},
    evaluate_options=frozenset({"plot", "which"}),
)

__all__ = ["RECIPE", "HierarchyConfig", "HierarchyTask", "load_run", "save_embeddings", "train_hierarchy"]
