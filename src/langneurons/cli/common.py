"""What the commands share besides their options: the checks of option values, the overwrite policy, and
the one-line messages on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langneurons.errors import LangneuronsError


# ---- checks ----------------------------------------------------------------------------------------
def pick_corpus(corpus: str, texts: str | None) -> str:
    """The corpus named by ``--corpus`` or its hidden alias ``--texts``."""
    return texts if texts is not None else corpus


def check_out(out: Path, overwrite: bool) -> None:
    """The one overwrite policy: an existing output is replaced only with ``--overwrite``."""
    if out.exists() and not overwrite:
        raise LangneuronsError(f"{out} exists; pass --overwrite to replace it")


def check_out_folder(out: Path, overwrite: bool, marker: str, holds: str) -> None:
    """A folder output: ``out`` is a folder or does not exist yet, and one holding ``marker`` (the file a
    finished result leaves) is replaced only with ``--overwrite``."""
    if out.exists() and not out.is_dir():
        raise LangneuronsError(f"{out} exists and is not a directory")
    if (out / marker).exists() and not overwrite:
        raise LangneuronsError(f"{out} already holds {holds}; pass --overwrite to replace it")


def check_positive(**values: int | float | None) -> None:
    """``check_positive(batch_size=8)``: each given number must be > 0 (one-line error naming the flag)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise LangneuronsError(f"--{name.replace('_', '-')} must be positive, got {value}")


def check_sentences(sentences: int | None) -> None:
    """``--sentences`` is a positive count everywhere (leave it out for all)."""
    if sentences is not None and sentences <= 0:
        raise LangneuronsError(f"--sentences must be positive (leave it out for all), got {sentences}")


def check_max_length(max_length: int) -> None:
    """``--max-length`` must exceed 1 (checked before the model loads; :func:`capped_max_length` caps it)."""
    if max_length <= 1:
        raise LangneuronsError(f"--max-length must be greater than 1, got {max_length}")


def capped_max_length(max_length: int, loaded: Any) -> int:
    """``--max-length`` capped at the model's own maximum (short-context models do not fail)."""
    check_max_length(max_length)
    return min(max_length, int(loaded.max_length))


# ---- messages --------------------------------------------------------------------------------------
def say(message: str) -> None:
    """One plain line on stderr (progress notes, 'loading model …', 'next: …' hints)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(escape(message), highlight=False)


def warn(message: str) -> None:
    """A one-line warning on stderr (scientific traps: the run goes on, but the user should know)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def next_hint(command: str) -> None:
    """The one-line 'next: langneurons …' hint after a stage (rank 0 only, under torchrun)."""
    say(f"next: {command}")


def write_result(out: Path, result: dict[str, Any]) -> None:
    """Write a command's result JSON and say so, with the run's wall time."""
    from langneurons.formats.atomic import write_json

    write_json(out, result)
    say(f"wrote {out} ({result['provenance']['wall_seconds']:.1f} s)")
