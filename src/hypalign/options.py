"""Declaring configuration fields once: a dataclass field with its command-line help, extra flag names and choices.

``x: int = opt(10, "Epochs over the data.", "--passes", min=1)`` is an ordinary dataclass default whose metadata the
generated command line (:mod:`hypalign.cli.recipes`) reads: the flag ``--x`` (plus ``--passes``), the help text, a
choice list and a lower/upper bound. Nothing here imports torch: ``hypalign --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

#: the default of a field that has none: the command line makes it a required option
REQUIRED: Any = dataclasses.MISSING


def opt(default: Any = dataclasses.MISSING, help: str = "", *aliases: str, choices: Sequence[str] | None = None,
        min: float | None = None, max: float | None = None, cli: bool = True,
        default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field carrying CLI metadata (see the module docstring); ``cli=False`` keeps it off the command
    line (still settable with ``--set`` and ``--config``)."""
    meta = {"help": help, "aliases": tuple(aliases), "choices": tuple(choices) if choices else None, "min": min,
            "max": max, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_options(obj: Any) -> None:
    """Check a config dataclass's values against its fields' ``choices`` and ``min``/``max``; a one-line
    :class:`~hypalign.errors.InputError` naming the option (as its flag) otherwise. ``None`` passes (unset)."""
    from hypalign.errors import InputError

    for f in dataclasses.fields(obj):
        meta = f.metadata or {}
        v = getattr(obj, f.name)
        if v is None or isinstance(v, bool):
            continue
        flag = "--" + f.name.replace("_", "-")
        if meta.get("choices") and v not in meta["choices"]:
            raise InputError(f"{flag} {v!r}: expected one of {', '.join(map(str, meta['choices']))}")
        if isinstance(v, (int, float)):
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f">= {lo:g}" if hi is None else (f"<= {hi:g}" if lo is None else f"in [{lo:g}, {hi:g}]")
                raise InputError(f"{flag} {v!r}: expected a value {rng}")
