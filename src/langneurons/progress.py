"""One progress display for every long job: a rich bar on a terminal, plain periodic lines in a log file.

``progress_bar(enabled, "sentences")`` returns an object with rich's ``Progress`` interface
(``add_task``, ``update``, ``advance``, a context manager). Pass ``tokens=N`` (cumulative counted
tokens) to ``add_task``/``update`` for a tok/s rate. When stderr is not a terminal (``record > log
2>&1``, SLURM), a line such as ``recording fr: 1,200/2,000 sentences (60%), 3,412 tok/s, 2m31s left``
is printed every ``LANGNEURONS_PROGRESS_SECONDS`` (default 30) seconds and once at the end.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

INTERVAL_ENV = "LANGNEURONS_PROGRESS_SECONDS"
QUIET_ENV = "LANGNEURONS_QUIET"  # set by the command line's --quiet and --json
DEFAULT_INTERVAL = 30.0
RATE_SECONDS = 30.0  # time constant of the moving-average rate behind the ETA


class _TokenRate(ProgressColumn):
    """``3,412 tok/s`` from the task's ``tokens`` field (blank when the task counts no tokens)."""

    def render(self, task: Task) -> Text:
        tokens = task.fields.get("tokens")
        elapsed = task.elapsed or 0.0
        if tokens is None or elapsed <= 0:
            return Text("")
        done = tokens - task.fields.get("tokens_start", 0)
        return Text(f"{done / elapsed:,.0f} tok/s")


def _markup_free(text: str) -> str:
    if "[" not in text:
        return text
    try:
        return Text.from_markup(text).plain
    except Exception:  # not rich markup after all (e.g. a literal "[x]")
        return text


def format_seconds(seconds: float) -> str:
    """``2h05m``, ``3m07s`` or ``41s``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


@dataclass
class _LineTask:
    description: str
    total: float | None
    completed: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    start_completed: float = 0.0
    printed: tuple[str, float] | None = None  # (description, completed) of the last line printed
    rate: float | None = None  # units per second, a moving average (time constant RATE_SECONDS)
    seen: tuple[float, float] | None = None  # (time, completed) of the last update that moved

    def observe(self, now: float) -> None:
        """Fold the progress since the last update into the moving average of the rate (a slow start, a model
        load or a first compiled batch, fades out instead of skewing the ETA for the whole run)."""
        last_t, last_done = self.seen or (self.started, self.start_completed)
        if self.completed <= last_done or now <= last_t:
            return
        speed = (self.completed - last_done) / (now - last_t)
        weight = 1 - math.exp(-(now - last_t) / RATE_SECONDS)
        self.rate = speed if self.rate is None else weight * speed + (1 - weight) * self.rate
        self.seen = (now, self.completed)


class LineProgress:
    """Plain periodic progress lines for logs (what, done/total unit, tok/s, ETA); rich's interface."""

    def __init__(self, unit: str = "", interval: float | None = None, stream: TextIO | None = None) -> None:
        self.unit = unit
        self.interval = _interval() if interval is None else interval
        self.stream = stream
        self.tasks: list[_LineTask] = []
        self._last = time.monotonic()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, exc_type, *_: Any) -> None:
        if exc_type is None:
            for task in self.tasks:
                self._emit(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        task = _LineTask(description, total, completed, dict(fields), start_completed=completed)
        task.fields.setdefault("tokens_start", fields.get("tokens", 0))
        self.tasks.append(task)
        return len(self.tasks) - 1

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if description is not None:
            task.description = description
        task.fields.update(fields)
        now = time.monotonic()
        task.observe(now)
        if now - self._last >= self.interval:
            self._last = now
            self._emit(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self, task: _LineTask) -> str:
        """``what: done/total unit (pct), N tok/s, elapsed, ETA left``."""
        elapsed = time.monotonic() - task.started
        done = task.completed
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{done:,.0f}" + (f"/{task.total:,.0f}" if task.total else "") + unit]
        if task.total:
            parts[0] += f" ({done / task.total:.0%})"
        tokens = task.fields.get("tokens")
        if tokens is not None and elapsed > 0:
            parts.append(f"{(tokens - task.fields.get('tokens_start', 0)) / elapsed:,.0f} tok/s")
        parts.append(format_seconds(elapsed))
        rate = task.rate or 0.0  # a moving average, not the mean since the start
        if task.total and done < task.total and rate > 0:
            parts.append(f"{format_seconds((task.total - done) / rate)} left")
        return f"{_markup_free(task.description) or 'working'}: " + ", ".join(parts)

    def _emit(self, task: _LineTask) -> None:
        key = (task.description, task.completed)
        if key == task.printed:
            return
        task.printed = key
        text = self.line(task)
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


class _Disabled:
    """No output at all (``progress=False``), same interface."""

    def __enter__(self) -> _Disabled:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


def stderr_is_terminal() -> bool:
    """True where a live bar can be drawn: a TTY (rich's own test, FORCE_COLOR / TTY_COMPATIBLE) or Jupyter."""
    console = Console(stderr=True)
    return console.is_terminal or console.is_jupyter


def progress_bar(enabled: bool, unit: str = "", transient: bool = False) -> Any:
    """Progress in ``unit`` (sentences, prompts, …): a rich bar on a terminal, plain lines otherwise.

    ``unit`` is a plain word; a rich template with ``{task.fields[...]}`` still works on a terminal.
    """
    if not enabled or os.environ.get(QUIET_ENV):  # --quiet / --json: no progress output
        return _Disabled()
    if not stderr_is_terminal():
        return LineProgress("" if "{" in unit else unit)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        _TokenRate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=transient,
    )
