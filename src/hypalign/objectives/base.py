"""Pluggable objectives (in the shape of pytorch-metric-learning's losses): a recipe's loss is the weighted sum of
the named objectives its configuration lists.

* an :class:`Objective` is one term: a ``weight``, the keys it reads from the model's outputs (``outputs``) and from
  the batch (``batch_keys``; a task puts a key in a batch only when an objective asks for it), and
  :meth:`Objective.compute`, the unweighted term from ``(outputs, batch, model)``;
* objective *kinds* are registered by name (:func:`register_objective`; the library in
  :mod:`hypalign.objectives.library`: ``contrastive``, ``entailment``, ``term_matching``, ``masked_lm``,
  ``segment_alignment``, ``pairwise_ce``);
* a recipe offers a *menu*: its own names bound to a kind, a default weight and the output keys to read
  (:class:`ObjectiveSpec`), e.g. MERU's ``{"contrastive": ObjectiveSpec("contrastive", 1.0, a="image", b="text"),
  "entailment": ObjectiveSpec("entailment", 0.2, general="text", specific="image")}``;
* the user picks from the menu with ``--objectives name[:weight],…`` (:func:`parse_objectives`), and
  :class:`ObjectiveSet` computes ``L = sum_k w_k L_k`` in the menu's order and logs every ``L_k``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hypalign.errors import InputError

_KINDS: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make an :class:`Objective` subclass available by ``name`` to every recipe."""

    def deco(cls: type[Objective]) -> type[Objective]:
        if name in _KINDS and _KINDS[name] is not cls:
            raise ValueError(f"objective kind {name!r} is registered twice")
        cls.kind = name
        _KINDS[name] = cls
        return cls

    return deco


def objective_kinds() -> dict[str, type[Objective]]:
    """Every registered objective kind: the library's (the package imports :mod:`hypalign.objectives.library` first,
    so they are always there) and any a user registered."""
    return dict(_KINDS)


class Objective:
    """One weighted term of a loss. Subclasses set ``outputs``/``batch_keys`` (usually from their bindings) and
    implement :meth:`compute`."""

    kind: ClassVar[str] = ""

    def __init__(self, weight: float = 1.0, **bindings: Any) -> None:
        self.weight = float(weight)
        self.bindings = bindings
        self.outputs: tuple[str, ...] = ()
        self.batch_keys: tuple[str, ...] = ()

    def compute(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module) -> Tensor:
        """The unweighted term (a scalar tensor)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, {self.bindings})"


@dataclass(frozen=True)
class ObjectiveSpec:
    """A recipe's menu entry: the objective kind, its default weight and its bindings (output keys, model
    attributes); ``needs_cones``: only in a geometry with entailment cones (dropped elsewhere, an error when asked
    for explicitly)."""

    kind: str
    weight: float
    bindings: dict[str, Any] = field(default_factory=dict)
    help: str = ""
    needs_cones: bool = False

    def __init__(self, kind: str, weight: float, help: str = "", needs_cones: bool = False,
                 **bindings: Any) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "weight", float(weight))
        object.__setattr__(self, "bindings", bindings)
        object.__setattr__(self, "help", help)
        object.__setattr__(self, "needs_cones", needs_cones)

    def build(self, weight: float | None = None, **overrides: Any) -> Objective:
        """The objective at ``weight`` (default: the menu's), with ``overrides`` of its bindings."""
        kinds = objective_kinds()
        if self.kind not in kinds:
            raise InputError(f"objective kind {self.kind!r}: expected one of {', '.join(sorted(kinds))}")
        return kinds[self.kind](self.weight if weight is None else weight, **{**self.bindings, **overrides})


def parse_objectives(spec: str, menu: Mapping[str, ObjectiveSpec],
                     aliases: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, float | None]:
    """``"a,b:0.5,alias"`` -> ``{name: weight or None (the menu's default)}``, names checked against ``menu``
    (and ``aliases``, which expand to several names); a one-line :class:`~hypalign.errors.InputError` otherwise."""
    out: dict[str, float | None] = {}
    for tok in (t.strip() for t in spec.split(",")):
        if not tok:
            continue
        name, sep, w = tok.partition(":")
        name = name.strip()
        weight: float | None = None
        if sep:
            try:
                weight = float(w)
            except ValueError:
                raise InputError(f"objective {tok!r}: the weight after ':' must be a number") from None
            if not weight >= 0:
                raise InputError(f"objective {tok!r}: the weight must be >= 0")
        if aliases and name in aliases:
            for n in aliases[name]:
                out[n] = weight
        elif name in menu:
            out[name] = weight
        else:
            names = list(menu) + list(aliases or {})
            raise InputError(f"objective {name!r}: expected any of {', '.join(names)}")
    return out


def format_objectives(weights: Mapping[str, float]) -> str:
    """The inverse of :func:`parse_objectives` for explicit weights: ``"a:1,b:0.2"``."""
    return ",".join(f"{k}:{v:g}" for k, v in weights.items())


class ObjectiveSet:
    """The weighted sum of named objectives, computed in the order given (the recipe's menu order)."""

    def __init__(self, parts: Mapping[str, Objective]) -> None:
        if not parts:
            raise InputError("no objectives: name at least one (--objectives)")
        self.parts = dict(parts)

    @classmethod
    def from_menu(cls, menu: Mapping[str, ObjectiveSpec], chosen: Mapping[str, float | None],
                  drop: tuple[str, ...] = (), overrides: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> ObjectiveSet:
        """Build the chosen objectives in menu order (``overrides``: bindings per name, e.g. from the config);
        weight 0 and names in ``drop`` are left out."""
        parts = {}
        for name, spec in menu.items():
            if name not in chosen or name in drop:
                continue
            obj = spec.build(chosen[name], **(overrides or {}).get(name, {}))
            if obj.weight > 0:
                parts[name] = obj
        return cls(parts)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.parts)

    def __contains__(self, name: str) -> bool:
        return name in self.parts

    @property
    def batch_keys(self) -> frozenset[str]:
        """Every batch key some objective reads."""
        return frozenset(k for o in self.parts.values() for k in o.batch_keys)

    @property
    def outputs(self) -> frozenset[str]:
        return frozenset(k for o in self.parts.values() for k in o.outputs)

    def weights(self) -> dict[str, float]:
        return {k: o.weight for k, o in self.parts.items()}

    def __call__(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any], model: nn.Module,
                 ) -> dict[str, Tensor]:
        """``{"loss": sum_k w_k L_k, name_k: L_k (detached), …}``."""
        terms = {k: (o.weight, o.compute(outputs, batch, model)) for k, o in self.parts.items()}
        device = next(iter(terms.values()))[1].device
        out = {k: v.detach() for k, (_, v) in terms.items()}
        out["loss"] = sum((w * v for w, v in terms.values()), torch.zeros((), device=device))
        return out
