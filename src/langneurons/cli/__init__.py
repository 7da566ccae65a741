"""The `langneurons` command line: one module per command group, each registering on the app of `cli.app`."""

from __future__ import annotations

import os
import sys

from langneurons.cli.app import app, fail, one_line_errors
from langneurons.errors import LangneuronsError

# Importing a module registers its commands on `app`, in pipeline order (the help lists them so).
# isort: off
from langneurons.cli import record_cmds  # noqa: E402,F401
from langneurons.cli import attribute_cmds  # noqa: E402,F401
from langneurons.cli import identify_cmds  # noqa: E402,F401
from langneurons.cli import stability_cmds  # noqa: E402,F401
from langneurons.cli import evaluate_cmds  # noqa: E402,F401
from langneurons.cli import translate_cmds  # noqa: E402,F401
from langneurons.cli import benchmark_cmds  # noqa: E402,F401
from langneurons.cli import analyze_cmds  # noqa: E402,F401
from langneurons.cli import explain_cmds  # noqa: E402,F401
from langneurons.cli import lens_cmds  # noqa: E402,F401
from langneurons.cli import moe_cmds  # noqa: E402,F401
from langneurons.cli import report_cmds  # noqa: E402,F401
# isort: on

__all__ = ["app", "main", "one_line_errors"]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def main() -> None:
    """Entry point of the console script and of `python -m langneurons`."""
    try:
        app()
    except LangneuronsError as exc:
        fail(_first_line(exc) or exc.__class__.__name__)
    except KeyboardInterrupt:
        fail("interrupted", 130)  # `record` says itself what it kept
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
