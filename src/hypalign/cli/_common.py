"""Shared CLI helpers: user-facing errors (one line, exit code 2) and consoles."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

# Tables stay readable when output is piped (rich would fall back to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 132)
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn :class:`hypalign.errors.InputError` (and ``ValueError`` from argument checks) into ``fail``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hypalign.errors import InputError

        try:
            return func(*args, **kwargs)
        except InputError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")


def print_metrics(result: dict[str, Any], as_json: bool = False, title: str | None = None) -> None:
    """A metric dict as one JSON line (``--json``) or a two-column rich table (floats to 4 places)."""
    if as_json:
        print_json(result)
        return
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
