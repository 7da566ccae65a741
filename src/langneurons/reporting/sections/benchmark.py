"""The benchmark section: every method through the same causal tests (benchmark.json), figure and table."""

from __future__ import annotations

from typing import Any

from langneurons.reporting.benchmark import LEGEND, benchmark_caption, benchmark_figure, paired_lines, table_rows
from langneurons.reporting.sections.common import Figure, Section, Table

TEMPLATE = "section_benchmark.html"


def _nested(lines: list[str]) -> list[tuple[str, list[str]]]:
    """The Markdown list of significant pairs as (test, [pairs]) for the template's nested list."""
    out: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("  - "):
            out[-1][1].append(line[4:])
        else:
            out.append((line.removeprefix("- ").replace("**", ""), []))
    return out


def benchmark_section(data: dict[str, Any]) -> Section:
    """Every method through the same causal tests: the figure and the table of the numbers behind it."""
    heading = "Benchmark: every method, the same tests"  # the figure's; the section is "Benchmark"
    head, *body = table_rows(data, markdown=False)
    return Section(
        "benchmark",
        "Benchmark",
        TEMPLATE,
        figures=[Figure("benchmark.png", benchmark_figure(data), heading, benchmark_caption(data))],
        data={"table": Table([str(h) for h in head], [[str(c) for c in r] for r in body]),
              "legend": LEGEND.replace("**bold**", "(best)") if data.get("paired") else None,
              "paired": _nested(paired_lines(data))},
    )


__all__ = ["benchmark_section"]
