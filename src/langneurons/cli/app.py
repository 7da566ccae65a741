"""The typer app every command module registers on, and the one-line error style they share."""

from __future__ import annotations

import difflib
import functools
import inspect
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from langneurons.errors import LangneuronsError

try:  # typer >= 0.22 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_exceptions


def usage_error_line(exc: Any) -> str:
    """A click usage error (unknown option or command, missing or bad value) as one line, with a did-you-mean."""
    ctx = getattr(exc, "ctx", None)
    where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    if isinstance(exc, click_exceptions.NoSuchOption):
        known = sorted({o for p in ctx.command.get_params(ctx) for o in (*p.opts, *p.secondary_opts)}) if ctx else []
        bare = {o.lstrip("-"): o for o in known}
        close = [bare[c] for c in difflib.get_close_matches(exc.option_name.lstrip("-"), bare, n=2, cutoff=0.6)]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return f"no such option {exc.option_name}{hint}{where}"
    message = " ".join(exc.format_message().split())  # click's message, on one line
    unknown = re.match(r"No such command '(.+?)'", message)
    if unknown and ctx is not None:
        close = difflib.get_close_matches(unknown[1], ctx.command.list_commands(ctx), n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        return f"no such command {unknown[1]}{hint}{where}"
    return f"{message[:1].lower()}{message[1:].rstrip('.')}{where}"


class OneLineGroup(TyperGroup):
    """The root command: click's usage errors become one ``error:`` line (exit 2), like every other error, and
    flags show no ``<bool>`` type in ``--help``."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        prog_name = prog_name or "langneurons"  # not 'python -m langneurons' in the hints
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:  # the help was printed already
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            fail(usage_error_line(exc), exc.exit_code)
        except typer.Abort:
            fail("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)

    def get_params(self, ctx: Any) -> list[Any]:
        return _no_flag_types(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        todo = [] if command is None else [command]
        while todo:  # the command, or a group's commands (`import tang`)
            one = todo.pop()
            _no_flag_types(one.get_params(ctx))
            todo += list(getattr(one, "commands", {}).values())
        return command


def _no_flag_types(params: list[Any]) -> list[Any]:
    """A flag takes no value: its type (``<bool>``) is left out of ``--help``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


app = typer.Typer(
    name="langneurons",
    cls=OneLineGroup,
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


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only warnings and errors (no progress, no notes).")]
JsonSummary = Annotated[
    bool,
    typer.Option("--json", help="Print a machine-readable summary (JSON) on stdout at the end; the rest to stderr."),
]


def one_line_errors(fn: F) -> F:
    """Turn LangneuronsError / OSError into a one-line message and exit code 2 (never a traceback), and give the
    command ``--quiet`` and ``--json`` (every command has both; see :mod:`langneurons.cli.common`'s output mode).

    Also in effect under typer's CliRunner, which bypasses :func:`main`.
    """
    from langneurons.cli.common import output_mode

    @functools.wraps(fn)
    def wrapper(*args: Any, quiet: bool = False, json_summary: bool = False, **kwargs: Any) -> Any:
        with output_mode(fn.__name__.removesuffix("_cmd").replace("_", "-"), quiet, json_summary) as summary:
            try:
                return fn(*args, **kwargs)
            except LangneuronsError as exc:
                message = (str(exc).splitlines() or [exc.__class__.__name__])[0]
            except OSError as exc:
                message = f"{exc.strerror or exc.__class__.__name__}: {exc.filename}"
            summary.update(ok=False, exit_code=2, error=message)
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)

    signature = inspect.signature(fn, eval_str=True)
    extra = [inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Quiet),
             inspect.Parameter("json_summary", inspect.Parameter.KEYWORD_ONLY, default=False,
                               annotation=JsonSummary)]  # fmt: skip
    parameters = sorted([*signature.parameters.values(), *extra], key=lambda p: p.kind)
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit non-zero (never a traceback)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
