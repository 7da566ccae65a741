"""CLI commands of the `report` stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import langneurons.cli.options as opt
from langneurons.cli.app import app, one_line_errors
from langneurons.cli.common import check_derived, note_output, say


@app.command("report")
@one_line_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="Run directory (statistics, neuron sets, ppl/steer, similarity)."),
    out: Annotated[
        Path | None,
        opt.out_option(
            "HTML file to write (a folder with --format png); default RUN_DIR/report.html (RUN_DIR/figures)."
        ),
    ] = None,
    format: str = typer.Option("html", "--format", help="html (one self-contained file) or png (figures only)."),
    neurons: list[Path] = typer.Option([], "--neurons", help="A neuron-set JSON kept elsewhere (repeatable)."),
    ppl: list[Path] = typer.Option([], "--ppl", help="A `ppl` result JSON kept elsewhere (repeatable)."),
    steer: list[Path] = typer.Option([], "--steer", help="A `steer` result JSON kept elsewhere (repeatable)."),
    lens: list[Path] = typer.Option([], "--lens", help="A `lens` result JSON kept elsewhere (repeatable)."),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Also replace a file at -o that is not a langneurons report.")
    ] = False,
) -> None:
    """Turn a run directory's result files into one self-contained HTML report (never loads a model)."""
    from langneurons.reporting import write_report

    fmt = format.lower()
    out = out or run_dir / ("figures" if fmt == "png" else "report.html")
    replaced = check_derived(out, overwrite)  # a report is derived: regenerated from the result files each time
    paths = write_report(run_dir, out, fmt, neurons=neurons, ppl=ppl, steer=steer, lens=lens)
    note_output(*paths)
    say(f"wrote {len(paths)} file(s): {', '.join(str(p) for p in paths[:4])}" + (" …" if len(paths) > 4 else "")
        + (" (replaced the earlier one)" if replaced else ""))  # fmt: skip
