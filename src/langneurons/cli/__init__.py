"""The `langneurons` command line: one file per command group, all registered on one typer app."""

from __future__ import annotations

import functools
import os
import sys
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
        from langneurons import __version__

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


# Each module registers its commands on `app` when imported, in pipeline order (the help lists them so).
# isort: off
from langneurons.cli import record_cmds  # noqa: E402,F401
from langneurons.cli import identify_cmds  # noqa: E402,F401
from langneurons.cli import stability_cmds  # noqa: E402,F401
from langneurons.cli import evaluate_cmds  # noqa: E402,F401
from langneurons.cli import translate_cmds  # noqa: E402,F401
from langneurons.cli import benchmark_cmds  # noqa: E402,F401
from langneurons.cli import analyze_cmds  # noqa: E402,F401
from langneurons.cli import moe_cmds  # noqa: E402,F401
from langneurons.cli import report_cmds  # noqa: E402,F401
# isort: on


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero (never a traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def main() -> None:
    """Entry point of the console script and of `python -m langneurons`."""
    try:
        app()
    except LangneuronsError as exc:
        fail(_first_line(exc) or exc.__class__.__name__)
    except KeyboardInterrupt:
        fail("interrupted (a recording keeps its last checkpoint; rerun the same command to resume)", 130)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        fail(f"{exc.strerror or exc.__class__.__name__}: {exc.filename}")
    except MemoryError:
        fail("out of memory: lower --batch-size or --max-length")
    except Exception as exc:  # a bug, not bad input: still one line, the traceback only when asked for
        if os.environ.get("LANGNEURONS_DEBUG"):
            raise
        hint = "set LANGNEURONS_DEBUG=1 for the traceback"
        fail(f"internal error {exc.__class__.__name__}: {_first_line(exc)} ({hint})", 1)


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
