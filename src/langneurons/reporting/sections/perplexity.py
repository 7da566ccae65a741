"""Perplexity sections: the PPL ratio with each neuron set switched off (`langneurons ppl`), its significance
against random controls, or a generic matrix for other perplexity files."""

from __future__ import annotations

from typing import Any

import langneurons.reporting.evaluation as ev
import langneurons.reporting.figures as fig
from langneurons.formats.run import Run
from langneurons.reporting.sections.common import Figure, Section, Table, anchor, describe_run, file_stem
from langneurons.reporting.stability_figures import significance_rows

TEMPLATE = "section_perplexity.html"


def ppl_section(run: Run, name: str, data: dict[str, Any]) -> Section:
    """The PPL-ratio matrix of a `langneurons ppl` file (a generic matrix for other files), with the significance
    table when the file has random controls."""
    settings = _settings_text(data)
    where = (_ppl_provenance(data) or describe_run(run)) + (f"; settings: {settings}" if settings else "")
    section = Section(f"ppl-{anchor(name)}", f"Perplexity with neurons switched off: {name}", TEMPLATE)
    head, rows = significance_rows(data)  # `ppl --controls R` (R >= 2): p-values against R random sets
    section.data["significance"] = Table(head, rows) if rows else None
    stem = file_stem(name)
    ratios = ev.ppl_ratios(data)
    if ratios is not None and ratios.rows:
        summary = ev.ppl_summary(ratios)
        section.intro = summary[:1].upper() + summary[1:] + "." if summary else ""
        section.figures.append(
            Figure(
                f"{stem}-matrix.png",
                ev.ppl_ratio_figure(ratios, f"{name}: perplexity ratio, neurons off / none"),
                f"{name}: perplexity ratio with each set switched off",
                f"PPL with the row's neurons deactivated divided by PPL with no intervention, for each evaluated "
                f"language (×2 = perplexity doubled; log colour scale, red = worse, blue = better, white = ×1); "
                f"boxed: a language's own neurons on its own text; below the line: matched random controls "
                f"(same count per layer, neurons of no language). From {name}.json; {where}.",
            )
        )
        return section
    matrix = ppl_matrix(data)
    if matrix is None:
        section.note = f"{name}.json holds no perplexity table this report understands."
        return section
    rows_, cols, values, label, centre = matrix
    section.figures.append(
        Figure(
            f"{stem}-matrix.png",
            fig.matrix_figure(rows_, cols, values, f"{name}: {label}", label, centre),
            f"{name}: {label}",
            f"{label} for each intervention (rows) and evaluated language (columns), from {name}.json; {where}.",
        )
    )
    return section


def ppl_matrix(data: dict[str, Any]):
    """(rows, cols, values, label, centre) from a perplexity file not written by `langneurons ppl`, read
    defensively so older or foreign files still get a figure; None if not understood."""
    cols = _first(data, ("eval_languages", "languages", "columns", "evaluated"))
    rows = _first(data, ("interventions", "rows", "sets", "ablated", "conditions"))
    for key, label, centre in (
        ("delta_relative", "ΔPPL = PPL / PPL(none) − 1", 0.0),  # what `langneurons ppl` writes
        ("delta_ppl", "ΔPPL", 0.0),
        ("delta", "ΔPPL", 0.0),
        ("ratio", "PPL ratio", 1.0),
        ("ppl_ratio", "PPL ratio", 1.0),
        ("ppl", "PPL", None),
        ("matrix", "PPL", None),
    ):
        value = data.get(key)
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            r = list(value)
            c = cols if isinstance(cols, list) else list(next(iter(value.values())))
            grid = [[_num(value[x].get(y)) for y in c] for x in r]
            return [str(x) for x in r], [str(y) for y in c], grid, label, centre
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            grid = [[_num(v) for v in row] for row in value]
            r = (
                [str(x) for x in rows]
                if isinstance(rows, list) and len(rows) == len(grid)
                else [str(i) for i in range(len(grid))]
            )
            width = len(grid[0])
            c = (
                [str(y) for y in cols]
                if isinstance(cols, list) and len(cols) == width
                else [str(j) for j in range(width)]
            )
            if all(len(row) == width for row in grid):
                return r, c, grid, label, centre
    return None


def _first(data: dict[str, Any], keys: tuple[str, ...]):
    for key in keys:
        if isinstance(data.get(key), list):
            return data[key]
    return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _ppl_provenance(data: dict[str, Any]) -> str:
    """Model, neuron set and evaluation texts as `langneurons ppl` records them ("" if absent)."""
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        return ""
    texts, neurons = prov.get("texts") or {}, prov.get("neurons") or {}
    sentences = texts.get("sentences") or {}
    counts = sorted(set(sentences.values())) if isinstance(sentences, dict) else []
    return (
        f"model {prov.get('model')}, site {prov.get('site')}; neurons of {neurons.get('path')} "
        f"(method {neurons.get('method')}) deactivated; evaluation texts {texts.get('spec')} "
        f"(sha256 {str(texts.get('sha256'))[:12]}…), {'/'.join(map(str, counts))} sentences per language"
    )


def _settings_text(data: dict[str, Any]) -> str:
    keys = ("model", "site", "corpus", "neuron_set", "mode", "positions", "strength", "max_length", "sentences")
    return ", ".join(f"{k}={data[k]}" for k in keys if isinstance(data.get(k), str | int | float))


__all__ = ["ppl_matrix", "ppl_section"]
