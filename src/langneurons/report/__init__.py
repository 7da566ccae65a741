"""Reports: result files of a run directory → one self-contained HTML page or a folder of PNG figures."""

from langneurons.report.html import build_figures, build_sections, render_html, write_report

__all__ = ["build_figures", "build_sections", "render_html", "write_report"]

from langneurons._verbs import make_verb  # noqa: E402

make_verb(__name__)  # `ln.report(...)` calls langneurons.api.report
