"""The report's content, one module per section; each returns a `Section` holding the data its template
(``reporting/templates/section_<module>.html``) needs. `html.py` lays them out on one page."""

from __future__ import annotations

from langneurons.formats.run import Run
from langneurons.reporting.sections.benchmark import benchmark_section
from langneurons.reporting.sections.common import Figure, Section, Table, describe_run
from langneurons.reporting.sections.directions import directions_section
from langneurons.reporting.sections.lens import lens_section
from langneurons.reporting.sections.neuron_sets import neuron_set_section, set_order
from langneurons.reporting.sections.neurons import neuron_browser_section
from langneurons.reporting.sections.perplexity import ppl_section
from langneurons.reporting.sections.recording import recording_section
from langneurons.reporting.sections.routing import routing_section
from langneurons.reporting.sections.similarity import similarity_section
from langneurons.reporting.sections.stability import stability_section
from langneurons.reporting.sections.steering import steer_section


def build_sections(run: Run) -> list[Section]:
    """The report's parts in reading order: neuron sets (main first), direction sets, evaluation, stability,
    benchmark, similarity, routing, recording; a result file this report cannot draw gives no section."""
    sections = [neuron_set_section(run, name, run.neuron_sets[name]) for name in set_order(run)]
    sections += [directions_section(name, data) for name, data in run.directions.items()]
    sections += [neuron_browser_section(name, data) for name, data in run.cards.items()]
    sections += [ppl_section(run, name, data) for name, data in run.ppl.items()]
    sections += [steer_section(name, data) for name, data in run.steer.items()]
    sections += [stability_section(name, data) for name, data in run.stability.items()]
    if run.benchmark and isinstance(run.benchmark.get("summary"), dict):
        sections.append(benchmark_section(run.benchmark))
    if run.similarity and isinstance(run.similarity.get("per_layer"), dict):
        sections.append(similarity_section(run.similarity))
    if run.routing and isinstance(run.routing.get("usage"), dict):
        sections.append(routing_section(run.routing))
    if run.lens:
        main = run.neuron_sets[set_order(run)[0]] if run.neuron_sets else None
        sections.append(lens_section(run.lens, main, run.routing))
    if run.stats_path is not None:
        sections.append(recording_section(run))
    return sections


def build_figures(run: Run) -> list[Figure]:
    """Every figure the run's result files allow, each with a caption naming what, on what, and how."""
    return [f for section in build_sections(run) for f in section.figures]


__all__ = ["Figure", "Section", "Table", "build_figures", "build_sections", "describe_run"]
