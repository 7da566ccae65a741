"""One progress bar style for every long job (recording, pooling, perplexity, steering)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(enabled: bool, unit: str = "", transient: bool = False) -> Progress:
    """A rich bar: description, bar, done/total, ``unit`` (may use ``{task.fields[...]}``), times."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=transient,
    )
