"""The command line generated from the recipe registry (:mod:`hypalign.recipes.registry`).

* ``hypalign train RECIPE``: the trainer's options, declared once on :class:`~hypalign.train.TrainConfig` and
  shared by every recipe (a recipe only changes their defaults), then the recipe's options from its configuration
  dataclass, ``--w-NAME`` for each objective of its menu, ``--config file.yaml`` and ``--set key=value`` overrides
  (precedence: defaults < the YAML file < flags given < ``--set``), ``--json``;
* ``hypalign eval RUN``, ``hypalign embed RUN INPUTS``, ``hypalign predict RUN INPUTS``: the run's recipe does it,
  or a one-line error names the recipe that does not; an option the recipe does not read is refused.

YAML files and ``--set`` keys: ``train.lr``, ``RECIPE.emb_dim``, or a bare field name (the recipe's first, then the
trainer's); values are YAML (``--set objectives=gc:1,term:0.5``, ``--set betas=[0.9,0.98]``).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from hypalign.cli._common import err_console, print_metrics, user_errors
from hypalign.errors import InputError


def _field_type(tp: Any) -> tuple[type | None, bool]:
    """``(scalar type, optional)`` of a field annotation; ``(None, …)`` for types the command line does not take."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return None, optional
        tp = args[0]
    return (tp if tp in (int, float, str, bool) else None), optional


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], type | None, bool]]:
    hints = typing.get_type_hints(cls)
    return [(f, *_field_type(hints[f.name])) for f in dataclasses.fields(cls)]


def _default(f: dataclasses.Field[Any], overrides: dict[str, Any]) -> Any:
    if f.name in overrides:
        return overrides[f.name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _parameter(f: dataclasses.Field[Any], tp: type, optional: bool, default: Any, prefix: str) -> inspect.Parameter:
    """A keyword parameter ``PREFIX + name`` whose annotation carries the typer option (flag, aliases, help, range,
    choices): typer builds the command line from such a signature."""
    meta = f.metadata or {}
    flag = "--" + f.name.replace("_", "-")
    help_ = meta.get("help", "")
    if tp is bool:
        info = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_, show_default=True)
        ann: Any = bool
        default = bool(default)
    else:  # choices and ranges are checked by the config itself (check_options): one-line errors, --set too
        if meta.get("choices"):
            help_ += " One of: " + ", ".join(map(str, meta["choices"])) + "."
        if meta.get("min") is not None or meta.get("max") is not None:
            help_ += f" Range: [{meta.get('min', '')}, {meta.get('max') if meta.get('max') is not None else ''}]."
        info = typer.Option(flag, *meta.get("aliases", ()), help=help_, show_default=default is not None)
        ann = tp | None if (optional or default is None) else tp
    return inspect.Parameter(prefix + f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[ann, info])


def _coerce(key: str, value: Any, f: dataclasses.Field[Any], hints: dict[str, Any]) -> Any:
    """A YAML value for field ``f``, checked against its annotation (one-line errors naming the key)."""
    tp, optional = _field_type(hints[f.name])
    if value is None:
        if optional:
            return None
        raise InputError(f"{key}: a value is required")
    if tp is None:  # tuples and the like: lists from YAML
        if isinstance(value, list):
            return tuple(value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{key}: expected a number, got {value!r}")
        return float(value)
    return value if isinstance(value, str) else str(value)


class _Target:
    """Where a ``key`` of a YAML file or ``--set`` goes: the trainer's config or the recipe's."""

    def __init__(self, recipe: Any) -> None:
        from hypalign.train import TrainConfig

        self.recipe = recipe
        self.sections = {"train": TrainConfig, recipe.name: recipe.config}
        self.fields = {s: {f.name: f for f in dataclasses.fields(c)} for s, c in self.sections.items()}
        self.hints = {s: typing.get_type_hints(c) for s, c in self.sections.items()}

    def resolve(self, key: str) -> tuple[str, str]:
        section, dot, name = key.partition(".")
        if dot:
            if section not in self.fields:
                raise InputError(f"{key}: unknown section {section!r}; expected train or {self.recipe.name}")
            if name not in self.fields[section]:
                raise InputError(f"{key}: {section} has no option {name!r}")
            return section, name
        for s in (self.recipe.name, "train"):
            if key in self.fields[s]:
                return s, key
        raise InputError(f"{key}: no such option of recipe {self.recipe.name} or of the trainer "
                         f"(see `hypalign train {self.recipe.name} --help`)")

    def apply(self, key: str, value: Any, values: dict[str, dict[str, Any]]) -> None:
        s, name = self.resolve(key)
        values[s][name] = _coerce(key, value, self.fields[s][name], self.hints[s])


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[str(k)] = v
    return flat


def _parse_set(item: str) -> tuple[str, Any]:
    import yaml

    key, eq, raw = item.partition("=")
    if not eq or not key.strip():
        raise InputError(f"--set {item!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def train_config_values(recipe: Any, params: dict[str, Any], given: set[str], config_file: Path | None,
                        sets: tuple[str, ...], weights: dict[str, float]) -> tuple[Any, Any]:
    """``(recipe config, TrainConfig)`` from the command line's values (``given``: the flags typed)."""
    from hypalign.objectives import format_objectives, parse_objectives
    from hypalign.train import TrainConfig

    target = _Target(recipe)
    values: dict[str, dict[str, Any]] = {"train": {}, recipe.name: {}}
    for s in values:  # defaults first (an option's default is the recipe's: see build_train_command)
        for f in dataclasses.fields(target.sections[s]):
            key = f"{'t_' if s == 'train' else 'r_'}{f.name}"
            if key in params and (params[key] is not None or key in given):
                values[s][f.name] = params[key]
            elif s == "train" and f.name in recipe.train_defaults:
                values[s][f.name] = recipe.train_defaults[f.name]
    if config_file is not None:
        for k, v in _load_yaml(config_file).items():
            target.apply(k, v, values)
    for s in values:  # flags typed on the command line win over the file
        for f in dataclasses.fields(target.sections[s]):
            key = f"{'t_' if s == 'train' else 'r_'}{f.name}"
            if key in given:
                values[s][f.name] = params[key]
    for item in sets:
        k, v = _parse_set(item)
        target.apply(k, v, values)
    if weights:  # --w-NAME: the weight of a listed objective
        rv = values[recipe.name]
        spec = rv.get("objectives", _default(target.fields[recipe.name]["objectives"], {}))
        chosen = parse_objectives(spec, recipe.objectives, recipe.objective_aliases)
        for name, w in weights.items():
            if w < 0:
                raise InputError(f"--w-{name} {w}: expected a weight >= 0")
            if name not in chosen:
                raise InputError(f"--w-{name}: objective {name!r} is not among the objectives ({spec}); add it to "
                                 "--objectives")
            chosen[name] = w
        rv["objectives"] = format_objectives({k: (recipe.objectives[k].weight if v is None else v)
                                              for k, v in chosen.items()})
    if "run_dir" not in values["train"] or not values["train"]["run_dir"]:
        raise InputError("a run directory is required: -o/--out DIR (or run_dir in --config)")
    if recipe.best_metric and values["train"].get("best_metric") is None:
        values["train"]["best_metric"], values["train"]["best_mode"] = recipe.best_metric
    missing = [f.name for f in dataclasses.fields(recipe.config) if f.name not in values[recipe.name]
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise InputError(f"recipe {recipe.name}: --{missing[0].replace('_', '-')} is required")
    return recipe.config(**values[recipe.name]), TrainConfig(**values["train"])


def build_train_command(recipe: Any) -> typer.core.TyperCommand:
    """``hypalign train RECIPE``: see the module docstring."""
    from hypalign.train import TrainConfig

    params: list[inspect.Parameter] = []
    seen: set[str] = set()
    for prefix, cls, overrides in (("r_", recipe.config, {}), ("t_", TrainConfig, dict(recipe.train_defaults))):
        for f, tp, optional in _fields(cls):
            if tp is None or not (f.metadata or {}).get("cli", True) or f.name in seen:
                continue  # a recipe option of the same name as a trainer option: the recipe's
            seen.add(f.name)
            # required options are checked after --config and --set are read (they may supply them)
            params.append(_parameter(f, tp, optional, _default(f, overrides), prefix))
    for name, spec in recipe.objectives.items():
        params.append(inspect.Parameter(
            f"w__{name}", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[float | None, typer.Option(
                f"--w-{name.replace('_', '-')}",
                help=f"Weight of objective {name} ({spec.help}; default {spec.weight:g}) when it is in "
                     "--objectives.")]))
    params += [
        inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            Path | None, typer.Option("--config", dir_okay=False, help="YAML file of options (sections train: and "
                                      f"{recipe.name}:, or bare names).")]),
        inspect.Parameter("sets", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
            list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help="Override any option, e.g. --set "
                                           "lr=3e-4 --set train.epochs=2 (repeatable; the last wins).")]),
        inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
            bool, typer.Option("--json", help="Print the final metrics as JSON.")]),
    ]

    @user_errors
    def callback(**kwargs: Any) -> None:
        ctx = _current_context()
        given = {k for k in kwargs if str(ctx.get_parameter_source(k)).endswith("COMMANDLINE")}
        weights = {k[3:]: v for k, v in kwargs.items() if k.startswith("w__") and v is not None}
        cfg, train = train_config_values(recipe, kwargs, given, kwargs["config_file"], tuple(kwargs["sets"] or ()),
                                         weights)
        result = recipe.train(cfg, train, say=lambda m: err_console.print(f"[hypalign] {m}", highlight=False))
        flat = recipe.summarize(result) if recipe.summarize else _flatten(result)
        print_metrics(flat, kwargs["as_json"])

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in params}
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(recipe.name, help=recipe.summary, context_settings={"max_content_width": 120})(callback)
    return typer.main.get_command(app)  # type: ignore[return-value]


def _current_context() -> Any:
    """The running command's context, from the click that typer runs on (recent typer vendors its own)."""
    try:
        from typer._click.globals import get_current_context  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - typer built on click itself
        from click import get_current_context
    return get_current_context()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


class TrainGroup(typer.core.TyperGroup):
    """``hypalign train``: one subcommand per registered recipe, built (and its module imported) when asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        from hypalign.recipes.registry import recipe_names

        return recipe_names()

    def get_command(self, ctx: Any, name: str) -> Any:
        from hypalign.recipes.registry import get_recipe, recipe_names

        if name not in recipe_names():
            return None
        return build_train_command(get_recipe(name))


TRAIN_HELP = ("Train a recipe on the shared trainer: `hypalign train RECIPE --help` lists the trainer's options (the "
              "same for every recipe) and the recipe's.")


# ---- eval / embed / predict a run ---------------------------------------------------------------------------
def _given(v: Any) -> bool:
    """An option the user gave: not None, not an unset flag, not an empty list (0 is a value: ``--level 0``)."""
    return not (v is None or v is False or (isinstance(v, (tuple, list)) and not v))


def _check_options(recipe: Any, verb: str, allowed: frozenset[str], given: dict[str, Any]) -> None:
    bad = [k for k, v in given.items() if _given(v) and k not in allowed]
    if bad:
        flag = "--" + bad[0].replace("_", "-")
        raise InputError(f"recipe {recipe.name} does not support {flag} for {verb}"
                         + (f" (it takes: {', '.join('--' + a.replace('_', '-') for a in sorted(allowed))})"
                            if allowed else ""))


def eval_run(run_dir: Path, as_json: bool = False, **options: Any) -> None:
    """``hypalign eval RUN``."""
    run, recipe, given = _run_offering("evaluate", run_dir, options)
    print_metrics(recipe.evaluate(run, **given), as_json, title=f"{run_dir} ({recipe.name})")


def _run_offering(verb: str, run_dir: Path, options: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """``(run, recipe, the options given)`` for ``hypalign VERB RUN``: a one-line error when the run's recipe does not
    offer ``verb`` or does not read an option given."""
    from hypalign.runs import load_run

    run = load_run(run_dir)
    recipe = run.recipe
    if getattr(recipe, verb) is None:
        raise InputError(f"recipe {recipe.name} has no {verb} (`hypalign {verb}` works on runs of: "
                         + ", ".join(_recipes_with(verb)) + ")")
    _check_options(recipe, verb, getattr(recipe, f"{verb}_options"), options)
    return run, recipe, {k: v for k, v in options.items() if _given(v)}


def embed_run(run_dir: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
    """``hypalign embed RUN INPUTS -o OUT``."""
    run, recipe, given = _run_offering("embed", run_dir, options)
    return recipe.embed(run, inputs, out, **given, say=lambda m: err_console.print(m, highlight=False))


def predict_run(run_dir: Path, inputs: list[str], as_json: bool = False, **options: Any) -> None:
    """``hypalign predict RUN INPUTS``."""
    from hypalign.cli._common import console

    run, recipe, given = _run_offering("predict", run_dir, options)

    def echo(line: str) -> None:
        if as_json:
            typer.echo(line)
        else:
            console.print(line, highlight=False, markup=False)

    recipe.predict(run, inputs, as_json=as_json, echo=echo, say=lambda m: err_console.print(m, highlight=False),
                   **given)


def _recipes_with(verb: str) -> list[str]:
    from hypalign.recipes.registry import get_recipe, recipe_names

    return [n for n in recipe_names() if getattr(get_recipe(n), verb) is not None]
