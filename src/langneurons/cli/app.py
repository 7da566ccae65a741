"""The typer app every command module registers on, and the one-line error style they share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from langneurons.errors import LangneuronsError

app = typer.Typer(
    name="langneurons",
    help="Find, explain and steer the neurons that make a language model multilingual.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        from langneurons.version import __version__

        print(f"langneurons {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Find, explain and steer the neurons that make a language model multilingual."""


def one_line_errors(fn: F) -> F:
    """Turn LangneuronsError / OSError into a one-line message and exit code 2 (never a traceback).

    Also in effect under typer's CliRunner, which bypasses :func:`main`.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LangneuronsError as exc:
            message = (str(exc).splitlines() or [exc.__class__.__name__])[0]
        except OSError as exc:
            message = f"{exc.strerror or exc.__class__.__name__}: {exc.filename}"
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero (never a traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
