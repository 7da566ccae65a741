"""CLI commands of the `report` stage."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from langneurons.cli import app
from langneurons.cli.analyze_cmds import one_line_errors


@app.command("report")
@one_line_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory (manifest, neuron sets, ppl/steer, similarity)."),
    out: Path = typer.Option(..., "--out", help="HTML file to write (a folder with --format png)."),
    format: str = typer.Option(
        "html", "--format", help="html (one self-contained file) or png (figures only)."
    ),
) -> None:
    """Turn a run directory's result files into one self-contained HTML report (never loads a model)."""
    from langneurons.report import write_report

    paths = write_report(run_dir, out, format.lower())
    Console(stderr=True).print(
        escape(
            f"wrote {len(paths)} file(s): {', '.join(str(p) for p in paths[:4])}"
            + (" …" if len(paths) > 4 else "")
        ),
        highlight=False,
    )
