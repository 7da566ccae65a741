"""One self-contained HTML report of a run directory: figures as base64 PNG, every text escaped.

The page sets ``data-report-status`` on ``<html>`` once every image has loaded: ``ok`` when all decoded with a
non-zero width, ``broken:N`` otherwise; a script error sets ``data-report-error``. Headless browsers (and
the test) read these attributes from the dumped DOM.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from langneurons.errors import LangneuronsError
from langneurons.formats.atomic import write_json
from langneurons.formats.run import Run, load_run
from langneurons.reporting.sections import (
    Figure,
    Section,
    build_figures,
    build_sections,
    describe_run,
    e,
    skipped_html,
)
from langneurons.version import __version__

STATUS_SCRIPT = """
window.addEventListener('error', function (e) {
  document.documentElement.setAttribute('data-report-error', String(e.message || e));
});
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images), bad = 0;
  imgs.forEach(function (img) { if (!img.complete || img.naturalWidth === 0) { bad += 1; } });
  document.documentElement.setAttribute('data-images', String(imgs.length));
  document.documentElement.setAttribute('data-report-status', bad ? 'broken:' + bad : 'ok');
});
"""

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
figure{margin:1.5em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.4em}
table{border-collapse:collapse;font-size:.88em;margin:.8em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right} th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left} .meta{color:#555;font-size:.9em}
code{background:#f3f3f3;padding:0 .2em} nav ol{margin:.3em 0 0 1.2em;padding:0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em;margin:1em 0}
.gen{margin:.4em 0 .8em;padding:.4em .8em;border-left:3px solid #1f77b4;background:#f7f9fc}
.gen .prompt{color:#666} .gen .tag{font-size:.8em;color:#555;margin-left:.5em}
"""


def render_html(run: Run, sections: list[Section]) -> str:
    """The whole page as one string: header, contents, then each section with its figures."""
    title = f"langneurons report: {run.info.get('model') or run.name}"
    body = []
    for sec in sections:
        body.append(f'<section id="{e(sec.anchor)}"><h2>{e(sec.heading)}</h2>')
        if sec.intro:
            body.append(f"<p>{e(sec.intro)}</p>")
        for f in sec.figures:
            data = base64.b64encode(f.png).decode("ascii")
            body.append(
                f'<figure id="{e(f.name)}"><img src="data:image/png;base64,{data}" alt="{e(f.heading)}">'
                f"<figcaption>{e(f.caption)}</figcaption></figure>"
            )
        body.append(sec.html + "</section>")
    if not sections:
        body.append('<p class="note">The run directory holds no neuron set, statistics, ppl, steering or '
                    "similarity result that this report can draw.</p>")  # fmt: skip
    contents = "".join(f'<li><a href="#{e(s.anchor)}">{e(s.heading)}</a></li>' for s in sections)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{STYLE}</style><script>{STATUS_SCRIPT}</script></head><body>"
        f'<h1>{e(title)}</h1><p class="meta">{e(describe_run(run))}</p>'
        f'<p class="meta">Run directory <code>{e(run.path)}</code>; generated {e(generated)} by langneurons '
        f"{e(__version__)}.</p>"
        + (f"<nav><strong>Contents</strong><ol>{contents}</ol></nav>" if contents else "")
        + "\n".join(body)
        + skipped_html(run)
        + "</body></html>\n"
    )


def write_report(
    run_dir: str | Path,
    out: str | Path,
    fmt: str = "html",
    *,
    neurons: Iterable[str | Path] = (),
    ppl: Iterable[str | Path] = (),
    steer: Iterable[str | Path] = (),
) -> list[Path]:
    """Write the report of ``run_dir`` (plus result files kept elsewhere): one HTML file (``fmt="html"``)
    or a folder of PNGs and captions.json (``fmt="png"``)."""
    if fmt not in ("html", "png"):
        raise LangneuronsError(f"unknown report format {fmt!r} (use html or png)")
    run = load_run(run_dir, neurons=neurons, ppl=ppl, steer=steer)
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
