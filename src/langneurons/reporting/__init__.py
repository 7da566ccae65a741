"""Reports: result files of a run directory → one self-contained HTML page or a folder of PNG figures."""

from langneurons.reporting.html import build_figures, build_sections, render_html, write_report

__all__ = ["build_figures", "build_sections", "render_html", "write_report"]
