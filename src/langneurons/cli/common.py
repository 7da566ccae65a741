"""What the commands share besides their options: the checks of option values, the overwrite policy, and
the one-line messages on stderr."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langneurons.errors import LangneuronsError
from langneurons.modelspec import SITES
from langneurons.progress import QUIET_ENV  # read by progress_bar: no bars or progress lines

NEURONSET_KIND = "langneurons-neuronset"
DIRECTIONS_KIND = "langneurons-directions"


# ---- checks ----------------------------------------------------------------------------------------
def pick_corpus(corpus: str, texts: str | None) -> str:
    """The corpus named by ``--corpus`` or its hidden alias ``--texts``."""
    return texts if texts is not None else corpus


def check_out(out: Path, overwrite: bool) -> None:
    """The one overwrite policy: an existing output is replaced only with ``--overwrite``."""
    if out.exists() and not overwrite:
        raise LangneuronsError(f"{out} exists; pass --overwrite to replace it")


def same_as_before(out: Path, new: dict[str, Any], overwrite: bool, what: str) -> bool:
    """A re-run: True when ``out`` already holds exactly ``new`` (same inputs and parameters: nothing to write);
    without ``--overwrite``, a ``what`` at ``out`` made from other inputs is refused, naming the difference."""
    from langneurons.formats.difference import describe_difference, same_result

    if overwrite or not out.is_file():
        return False
    try:
        old = json.loads(out.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if old is not None and same_result(old, new):
        return True
    why = "is not valid JSON" if old is None else f"holds {what} of other inputs: {describe_difference(old, new)}"
    raise LangneuronsError(f"{out} {why}; pass --overwrite to replace it, or -o another file")


def check_derived(out: Path, overwrite: bool) -> bool:
    """A derived output (a report, figures) is regenerated without ``--overwrite`` when it is one langneurons
    wrote: an HTML report, a PNG, or a folder of PNGs. Anything else there needs ``--overwrite``. True when an
    earlier one is replaced."""
    if not out.exists():
        return False
    if overwrite:
        return True
    if out.is_dir():
        ours = all(p.suffix == ".png" or p.name == "captions.json" for p in out.iterdir())
    elif out.suffix == ".png":
        ours = out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        ours = b"<title>langneurons report" in out.read_bytes()[:4096]
    if not ours:
        raise LangneuronsError(f"{out} exists and is not a langneurons report or figure; pass --overwrite to replace")
    return True


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


def peek_set(path: Path, flag: str) -> dict[str, Any]:
    """The header of the neuron set (``--neurons``) or direction set (``--directions``) at ``path``, read as plain
    JSON without torch, so a wrong file fails at once (before any output is checked or the model loads)."""
    neuron_flag = flag in ("--neurons", "--heads")  # a head set is a neuron set whose site is "heads"
    want, other = (NEURONSET_KIND, DIRECTIONS_KIND) if neuron_flag else (DIRECTIONS_KIND, NEURONSET_KIND)
    what = {NEURONSET_KIND: "a neuron set", DIRECTIONS_KIND: "a direction set"}
    if not path.is_file():
        raise LangneuronsError(f"{flag} {path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LangneuronsError(f"{flag} {path} is not valid JSON ({str(exc).splitlines()[0]})") from None
    kind = str(data.get("format", "")).split("/")[0] if isinstance(data, dict) else ""
    if kind == other:
        swap = "--directions" if neuron_flag else "--neurons"
        origin = "identify --method diffmean" if other == DIRECTIONS_KIND else f"identify --method {data.get('method')}"
        raise LangneuronsError(f"{flag} {path} is {what[other]} (from `{origin}`), not {what[want]}: pass it as {swap}")
    if kind != want:
        raise LangneuronsError(f"{flag} {path} is not {what[want]} (its format is {data.get('format')!r})"
                               if isinstance(data, dict) else f"{flag} {path} is not {what[want]}")  # fmt: skip
    return data


def check_head_flag(header: dict[str, Any], path: Path, heads: bool) -> None:
    """A head set (site "heads") comes with ``--heads``, a neuron set with ``--neurons`` (one-line error)."""
    if heads != (header.get("site") == "heads"):
        kind, right = ("head", "--heads") if header.get("site") == "heads" else ("neuron", "--neurons")
        raise LangneuronsError(f"{path} is a {kind} set: pass it with {right}")


def check_in_set(langs: list[str], have: list[str], flag: str, path: Path) -> None:
    """Each of ``langs`` (given with ``flag``) is a language of the set at ``path`` (did-you-mean if not)."""
    for lang in langs:
        if lang not in have:
            close = difflib.get_close_matches(lang, have, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise LangneuronsError(f"{flag} {lang}: not a language of {path} (it has {', '.join(have)}){hint}")


def check_site(site: str | None, any_site: bool, set_site: str | None, path: Path) -> None:
    """``--site`` is a known site, and the set's own unless ``--any-site`` (checked before the model loads)."""
    if any_site and site is None:
        raise LangneuronsError("--any-site applies with --site only (without --site the set's own site is used)")
    if site is None:
        return
    if site not in SITES:
        raise LangneuronsError(f"unknown --site {site!r}; choose {' or '.join(SITES)}")
    if set_site is not None and site != set_site and not any_site:
        raise LangneuronsError(
            f"--site {site}: {path} was found at site {set_site!r}; add --any-site to apply it at {site!r} anyway"
        )


# ---- messages ---------------------------------------------------------------------------------------
LOG_WIDTH = 200  # columns of a table written to a file or pipe (rich's 80 would wrap paths and rows)


def make_console(stderr: bool = False):
    """A rich console for tables and result lines: never wraps a line of text (a path stays one string in a log),
    and lays tables out ``LOG_WIDTH`` wide when the output is not a terminal."""
    from rich.console import Console

    probe = Console(stderr=stderr)
    width = None if probe.is_terminal or probe.is_jupyter else LOG_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


# The output mode of the command running now (--quiet, --json) and what its JSON summary will say.
_MODE: dict[str, Any] = {"quiet": False, "summary": None}


@contextlib.contextmanager
def output_mode(command: str, quiet: bool, json_summary: bool) -> Iterator[dict[str, Any]]:
    """Run one command with ``--quiet`` (warnings and errors only) and/or ``--json`` (everything human-readable to
    stderr; at the end one JSON object on stdout: command, ok, exit_code, outputs, next, warnings, notes, error)."""
    summary: dict[str, Any] = {"command": command, "ok": True, "exit_code": 0, "outputs": [], "next": None,
                               "warnings": [], "notes": []}  # fmt: skip
    saved, saved_env = dict(_MODE), os.environ.get(QUIET_ENV)
    _MODE.update(quiet=quiet or json_summary, summary=summary)
    if quiet or json_summary:
        os.environ[QUIET_ENV] = "1"
    stdout = sys.stdout
    shown = warnings.showwarning
    # A Python warning from the library (e.g. the fused counting update fell back) is one `warning:` line too.
    warnings.showwarning = lambda message, *_args, **_kwargs: warn(str(message))
    try:
        with contextlib.redirect_stdout(sys.stderr) if json_summary else contextlib.nullcontext():
            yield summary
    except SystemExit as exc:  # typer.Exit is not a SystemExit; fail() and Ctrl-C handlers are
        code = exc.code if isinstance(exc.code, int) else 1
        if code:
            summary.update(ok=False, exit_code=code)
        raise
    except Exception as exc:
        code = getattr(exc, "exit_code", None)
        if code is None or code:
            summary.update(ok=False, exit_code=code if isinstance(code, int) else 1)
        raise
    finally:
        warnings.showwarning = shown
        _MODE.update(saved)
        if saved_env is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = saved_env
        if json_summary:
            print(json.dumps(summary, default=str), file=stdout, flush=True)


def note_output(*paths: Path | str) -> None:
    """Name the files a command wrote (the ``outputs`` of its ``--json`` summary)."""
    if _MODE["summary"] is not None:
        _MODE["summary"]["outputs"] += [str(p) for p in paths]


def say(message: str) -> None:
    """One plain line on stderr (progress notes, 'loading model …', 'next: …' hints); none with --quiet."""
    if _MODE["summary"] is not None:
        _MODE["summary"]["notes"].append(message)
    if _MODE["quiet"]:
        return
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(escape(message), highlight=False)


def warn(message: str) -> None:
    """A one-line warning on stderr (scientific traps: the run goes on, but the user should know)."""
    from rich.console import Console
    from rich.markup import escape

    if _MODE["summary"] is not None:
        _MODE["summary"]["warnings"].append(message)
    Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def next_hint(command: str) -> None:
    """The one-line 'next: langneurons …' hint after a stage (rank 0 only, under torchrun)."""
    if _MODE["summary"] is not None:
        _MODE["summary"]["next"] = command
    say(f"next: {command}")


def write_result(out: Path, result: dict[str, Any]) -> None:
    """Write a command's result JSON and say so, with the run's wall time."""
    from langneurons.formats.atomic import write_json

    write_json(out, result)
    note_output(out)
    say(f"wrote {out} ({result['provenance']['wall_seconds']:.1f} s)")
