"""One run format, one loader, for every recipe.

A run directory (``hypalign train RECIPE -o runs/NAME``) holds:

* ``config.json``: ``{"recipe": NAME, "train": TrainConfig fields, NAME: the recipe's config, …}``;
* ``model/``: the trained model (``save_pretrained``), with everything prediction needs saved beside the weights
  (ProtCLIP: its nearest-neighbour transfer reference and tuned term features), so ``Model.from_pretrained``
  alone predicts as ``hypalign predict`` does;
* ``eval.json`` (final metrics), ``metrics.jsonl`` (the training log), ``latest/`` and ``best/`` checkpoints;
  recipes may add files (the hierarchy recipe: ``embeddings.npy``, ``names.txt``, ``embedding.json``).

:func:`load_run` reads any of them and hands back a :class:`Run` that knows its recipe
(:mod:`hypalign.recipes.registry`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypalign.errors import InputError


def read_run_config(run: str | os.PathLike[str], recipe: str | None = None) -> dict[str, Any]:
    """A run directory's ``config.json`` (checked to be from ``recipe`` when given; errors say what the directory
    is)."""
    cfg_file = Path(run) / "config.json"
    what = f"`hypalign train {recipe}`" if recipe else "`hypalign train`"
    if not cfg_file.is_file():
        raise InputError(f"{run}: no config.json (is this a {what} run directory?)")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg_file}: unreadable ({exc})") from None
    if not isinstance(cfg, dict) or "recipe" not in cfg:
        raise InputError(f"{cfg_file}: no 'recipe' field (not a hypalign run directory)")
    if recipe is not None and cfg.get("recipe") != recipe:
        raise InputError(f"{run}: recipe {cfg.get('recipe')!r}, expected {recipe}")
    return cfg


@dataclass
class Run:
    """A run directory with its configuration and recipe."""

    path: Path
    config: dict[str, Any]

    @property
    def recipe_name(self) -> str:
        return str(self.config["recipe"])

    @property
    def recipe(self) -> Any:
        from hypalign.recipes.registry import get_recipe

        return get_recipe(self.recipe_name)

    @property
    def recipe_config(self) -> dict[str, Any]:
        """The recipe's own section of ``config.json``."""
        return dict(self.config.get(self.recipe_name, {}))

    @property
    def train_config(self) -> dict[str, Any]:
        return dict(self.config.get("train", {}))

    def load_model(self, which: str = "model") -> Any:
        """The trained model (``model/``, or the ``latest`` / ``best`` checkpoint)."""
        if which not in ("model", "latest", "best"):
            raise InputError(f"which {which!r}: expected model, latest or best")
        return self.recipe.load_model(self.path, which)

    def eval_json(self) -> dict[str, Any]:
        """The metrics written when the run finished (``eval.json``)."""
        f = self.path / "eval.json"
        if not f.is_file():
            raise InputError(f"{self.path}: no eval.json (the run has not finished; resume it with --resume)")
        return json.loads(f.read_text(encoding="utf-8"))


def load_run(path: str | os.PathLike[str], recipe: str | None = None) -> Run:
    """The run in ``path`` (of ``recipe``, when given); a one-line error when it is not one."""
    p = Path(path)
    return Run(p, read_run_config(p, recipe))


def load_trained_model(run: Any, model_cls: Any, which: str = "model", build: Any = None) -> Any:
    """A run's trained model: ``RUN/model/`` through ``model_cls.from_pretrained`` (huggingface_hub's printed line
    kept off stdout, which may carry ``--json``) when ``which`` is ``model`` and it exists; otherwise the ``latest``
    (for ``model``) or ``which`` checkpoint loaded into ``build()`` — by default ``model_cls(**RUN/model/config.json)``.
    ``run``: a :class:`Run` or a run directory."""
    import contextlib
    import io

    from hypalign.train.checkpoint import find_checkpoint, load_checkpoint

    path = Path(getattr(run, "path", run))
    if which == "model" and (path / "model" / "model.safetensors").is_file():
        with contextlib.redirect_stdout(io.StringIO()):
            return model_cls.from_pretrained(str(path / "model"))
    ck = find_checkpoint(path, "latest" if which == "model" else which)
    if build is None and (path / "model" / "config.json").is_file():
        config = json.loads((path / "model" / "config.json").read_text())
        build = lambda: model_cls(**config)  # noqa: E731
    if ck is None or build is None:
        raise InputError(f"{path}: no trained model (neither model/ nor a {which} checkpoint with its model config)")
    model = build()
    load_checkpoint(ck, model)
    return model
