"""Stability sections: the figures of a `langneurons stability` result (bootstrap, data size, sensitivity)."""

from __future__ import annotations

from typing import Any

from langneurons.reporting.sections.common import Figure, Section, anchor
from langneurons.reporting.stability_figures import stability_figures

TEMPLATE = "section_stability.html"


def stability_section(name: str, data: dict[str, Any]) -> Section:
    """The figures of a `langneurons stability` result, or a note when the file holds none this report reads."""
    figures = [Figure(*parts) for parts in stability_figures(name, data)]
    section = Section(f"stability-{anchor(name)}", f"Stability of the neuron set: {name}", TEMPLATE, figures=figures)
    if not figures:
        section.note = f"{name}.json holds no stability result this report understands."
    return section


__all__ = ["stability_section"]
