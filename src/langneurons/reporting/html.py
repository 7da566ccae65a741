"""One self-contained HTML report of a run directory, drawn by the Jinja2 templates in ``templates/``.

Figures are embedded as base64 PNG data URIs, so the page needs no other file and no network. Autoescape is on:
every value that reaches the page (model and corpus names, language codes, paths, generations) is escaped by the
template engine, never by hand.

The page sets ``data-report-status`` on ``<html>`` once every image has loaded: ``ok`` when all decoded with a
non-zero width, ``broken:N`` otherwise; a script error sets ``data-report-error``. Headless browsers (and
the test) read these attributes from the dumped DOM.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_json
from langneurons.formats.run import Run, load_run
from langneurons.reporting.sections import Figure, Section, build_figures, build_sections, describe_run
from langneurons.version import __version__


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment: the package's ``templates/`` folder, autoescape on, undefined names an error."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("langneurons.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(run: Run, sections: list[Section]) -> str:
    """The whole page as one string: header, contents, each section through its template, files not used."""
    title = f"langneurons report: {run.info.get('model') or run.name}"
    return environment().get_template("report.html").render(
        title=title,
        description=describe_run(run),
        run_path=str(run.path),
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
        sections=sections,
        skipped=run.skipped or {},
    )


def write_report(
    run_dir: str | Path,
    out: str | Path,
    fmt: str = "html",
    *,
    neurons: Iterable[str | Path] = (),
    ppl: Iterable[str | Path] = (),
    steer: Iterable[str | Path] = (),
    lens: Iterable[str | Path] = (),
) -> list[Path]:
    """Write the report of ``run_dir`` (plus result files kept elsewhere): one HTML file (``fmt="html"``)
    or a folder of PNGs and captions.json (``fmt="png"``)."""
    if fmt not in ("html", "png"):
        raise LangneuronsError(f"unknown report format {fmt!r} (use html or png)")
    run = load_run(run_dir, neurons=neurons, ppl=ppl, steer=steer, lens=lens)
    with warnings.catch_warnings():  # figures are checked by tests; nothing leaks into the terminal
        warnings.simplefilter("ignore")
        sections = build_sections(run)
    figures = [f for sec in sections for f in sec.figures]
    out = Path(out)
    if fmt == "png":
        if out.exists() and not out.is_dir():
            raise LangneuronsError(f"{out} exists and is not a directory (--format png writes a folder)")
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for f in figures:
            (out / f.name).write_bytes(f.png)
            paths.append(out / f.name)
        write_json(out / "captions.json", {f.name: {"heading": f.heading, "caption": f.caption} for f in figures})
        return [*paths, out / "captions.json"]
    if out.is_dir():
        raise LangneuronsError(f"{out} is a directory; give a file name such as report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(run, sections), encoding="utf-8")
    tmp.replace(out)
    return [out]


__all__ = ["Figure", "Section", "build_figures", "build_sections", "render_html", "write_report"]
