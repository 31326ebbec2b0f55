"""The recipe registry: what a recipe declares, and the one lookup every command goes through.

A :class:`Recipe` is a recipe's configuration dataclass plus its entry points:

* ``train(cfg, train, say) -> results``: build the task, run the shared :class:`~hypalign.train.Trainer`, save
  ``model/`` (``save_pretrained``) and ``eval.json`` in ``train.run_dir``; must not mutate ``train``;
* ``load_model(run, which)``: the trained model of a run (``which``: ``model``, ``latest`` or ``best``);
* ``evaluate(run, **options)``, ``embed(run, inputs, out, **options)``, ``predict(run, inputs, **options)``: what
  ``hypalign eval|embed|predict RUN`` call (``None``: the recipe does not offer it — a one-line error names it);
  each declares the generic options it reads (``evaluate_options`` …); an option it does not read is refused, never
  silently ignored;
* ``train_defaults``: the recipe's defaults for the shared trainer options (the options themselves are declared
  once, on :class:`~hypalign.train.TrainConfig`); ``best_metric``;
* ``objectives``: its menu of named objectives (:class:`~hypalign.objectives.ObjectiveSpec`), reachable as
  ``--objectives name[:weight],…`` and ``--w-NAME``.

Built-in recipes are imported only when asked for (``hypalign --help`` stays fast); :func:`register` adds one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypalign.errors import InputError

#: built-in recipes: name -> (module defining ``RECIPE``, one-line summary for ``--help``)
BUILTIN: dict[str, tuple[str, str]] = {
    "hypvit": ("hypalign.recipes.hypvit", "Hyp-ViT metric learning (pairwise cross-entropy, Poincaré ball or sphere)."),
    "hierarchy": ("hypalign.recipes.hierarchy",
                  "Hierarchy embedding of WordNet, GO or your edge list (Nickel & Kiela 2017/2018)."),
    "protclip": ("hypalign.recipes.protclip",
                 "ProtCLIP protein <-> GO-text alignment on Swiss-Prot, evaluated by Fmax / MRR."),
    "meru": ("hypalign.recipes.meru", "MERU: hyperbolic image-text alignment with entailment cones (Lorentz model)."),
    "clip": ("hypalign.recipes.clip", "CLIP baseline: MERU's towers and budget on the unit sphere."),
    "structure-tokenizer": ("hypalign.recipes.structok",
                            "DPLM-2's structure tokenizer: backbone geometry to 13 sign bits per residue (LFQ) and "
                            "back."),
    "infoalign": ("hypalign.recipes.infoalign",
                  "InfoAlign: molecule representations that decode their context on a graph (GIN + information "
                  "bottleneck)."),
    "dplm2": ("hypalign.recipes.dplm2",
              "DPLM-2: multimodal protein LM over structure tokens + amino acids (bit- or index-based)."),
    "protein-lm": ("hypalign.recipes.protlm",
                   "Protein language model (ESM-2 layout) pre-trained here: DPLM's absorbing diffusion or ESM's MLM."),
}

_REGISTERED: dict[str, Recipe] = {}


@dataclass
class Recipe:
    """See the module docstring."""

    name: str
    summary: str
    config: type
    train: Callable[..., dict[str, Any]]
    load_model: Callable[..., Any]
    evaluate: Callable[..., dict[str, Any]] | None = None
    embed: Callable[..., Any] | None = None
    predict: Callable[..., Any] | None = None
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    best_metric: tuple[str, str] | None = None  # (metric, "max" | "min")
    objectives: Mapping[str, Any] = field(default_factory=dict)  # name -> ObjectiveSpec
    objective_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    evaluate_options: frozenset[str] = frozenset()
    embed_options: frozenset[str] = frozenset()
    predict_options: frozenset[str] = frozenset()
    #: turn a finished run's results into the flat ``{metric: value}`` printed by ``train``
    summarize: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def train_config(self, run_dir: str, **overrides: Any) -> Any:
        """The :class:`~hypalign.train.TrainConfig` that ``hypalign train NAME -o run_dir`` uses: the trainer's
        defaults with this recipe's ``train_defaults`` and ``best_metric``, then ``overrides`` (so the library call
        and the command line start from the same defaults)."""
        from hypalign.train import TrainConfig

        values: dict[str, Any] = dict(self.train_defaults)
        if self.best_metric:
            values["best_metric"], values["best_mode"] = self.best_metric
        values.update(overrides)
        return TrainConfig(run_dir=run_dir, **values)

    def config_from_dict(self, values: Mapping[str, Any]) -> Any:
        """The recipe's config from a (saved or user) mapping; unknown keys are a one-line error."""
        import dataclasses

        names = {f.name for f in dataclasses.fields(self.config)}
        bad = sorted(set(values) - names)
        if bad:
            raise InputError(f"recipe {self.name}: unknown option(s) {', '.join(bad)}")
        return self.config(**values)


def register(recipe: Recipe) -> Recipe:
    """Make ``recipe`` available to every command (``hypalign train NAME`` …)."""
    _REGISTERED[recipe.name] = recipe
    return recipe


def recipe_names() -> list[str]:
    return sorted({*BUILTIN, *_REGISTERED})


def recipe_summary(name: str) -> str:
    if name in _REGISTERED:
        return _REGISTERED[name].summary
    return BUILTIN[name][1]


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (a one-line error listing the known ones otherwise)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in BUILTIN:
        raise InputError(f"unknown recipe {name!r}; expected one of {', '.join(recipe_names())}")
    module = importlib.import_module(BUILTIN[name][0])
    recipe = module.RECIPE
    if not isinstance(recipe, Recipe) or recipe.name != name:
        raise RuntimeError(f"{BUILTIN[name][0]}.RECIPE is not the recipe {name!r}")
    _REGISTERED[name] = recipe
    return recipe
