"""Neuron-set sections: counts per layer and language, classes over depth with the phases, overlap between
languages; a set that selects nothing is explained in words."""

from __future__ import annotations

import math
from pathlib import Path

import langneurons.reporting.figures as fig
from langneurons.analysis.sets import phase_profile
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.run import Run
from langneurons.reporting.sections.common import Figure, Section, anchor, file_stem, set_settings

TEMPLATE = "section_neuron_sets.html"


def set_order(run: Run) -> list[str]:
    """Neuron sets, the run's main set first: sets given explicitly, then those its ppl/steer results used,
    then LAPE, entropy−λ and the rest by name."""
    used = []
    for data in (*run.ppl.values(), *run.steer.values()):
        path = ((data.get("provenance") or {}).get("neurons") or {}).get("path")
        if isinstance(path, str):
            used.append(Path(path).stem)
    method_rank = {"lape": 0, "entropy-lambda": 1}

    def key(name: str):
        ns = run.neuron_sets[name]
        given = run.given.index(name) if name in run.given else len(run.given)
        return (given, 0 if name in used else 1, method_rank.get(ns.method, 2), name)

    return sorted(run.neuron_sets, key=key)


def neuron_set_section(run: Run, name: str, ns: NeuronSet) -> Section:
    """Counts per layer and language, classes over depth with the phases, overlap; an empty set in words."""
    unit = {"heads": "head", "experts": "expert"}.get(ns.site or "", "neuron")  # head and expert sets share the file
    how = f"{set_settings(ns)}; {ns.n_pairs()} (language, {unit}) pairs, {ns.n_distinct()} distinct {unit}s"
    src = ns.source.get("corpus")
    model = ns.model or run.info.get("model") or "unknown model"
    on = f"model {model}, site {ns.site or '?'}" + (f", statistics from corpus {src}" if src else "")
    per_lang = ", ".join(f"{lang} {ns.count(lang)}" for lang in ns.languages)
    classes = ", ".join(f"{k} {v}" for k, v in ns.class_counts().items() if v)
    intro = f"{how}. {unit.capitalize()}s per language: {per_lang}." + (f" Classes: {classes}." if classes else "")
    intro += warnings_text(ns)
    section = Section(f"set-{anchor(name)}", f"{unit.capitalize()} set {name}", TEMPLATE, intro)
    if ns.n_distinct() == 0:
        section.note = empty_set_text(ns)
        return section
    stem = file_stem(name)
    if ns.n_pairs() == 0:
        section.note = (
            f"{name} selected {ns.n_distinct()} neurons but assigned none of them to a language, so there is "
            f"nothing to show per language; the classes figure shows where they sit."
        )
    else:
        section.figures.append(
            Figure(
                f"{stem}-heatmap.png",
                fig.neuron_heatmap(ns, f"{name}: neurons per layer and language"),
                f"{name}: neurons per layer and language",
                f"Number of neurons of each language in each layer of set {name} ({how}); {on}. Grey: none.",
            )
        )
    phases = phase_profile(ns)
    bic = ", ".join(f"{k}: {v:.1f}" for k, v in phases["bic"].items())
    bands = "; ".join(
        f"P{i + 1} layers {b['layers'][0]}–{b['layers'][1]} {b['level']} ({b['per_layer']:.1f}/layer, "
        f"{b['share']:.0%} of the neurons)"
        for i, b in enumerate(phases["bands"])
    )
    section.figures.append(
        Figure(
            f"{stem}-classes.png",
            fig.class_profile(ns, phases, f"{name}: neuron classes over depth"),
            f"{name}: classes over depth",
            f"Neurons per layer by class (specific = 1 language, related = 2..K−1, agnostic = all K, "
            f"unassigned = selected without a language) in set {name} ({how}); {on}. Shaded bands and black "
            f"lines: the depth phases of the specific + related neurons: a least-squares piecewise-constant "
            f"fit of their per-layer counts, the number of phases chosen by BIC over 1–5 (each at least 2 "
            f"layers; BIC by k: {bic}) — here {phases['n_phases']} (line = a phase's mean per layer; high/low "
            f"= above/below the model's mean; % = its share): {bands}.",
        )
    )
    if ns.n_pairs() and len(ns.languages) > 1:
        section.figures.append(
            Figure(
                f"{stem}-overlap.png",
                fig.overlap_matrix(ns, f"{name}: overlap between languages"),
                f"{name}: overlap between languages",
                f"Jaccard index of the neuron sets of each language pair (cell text: shared neurons; diagonal, "
                f"grey: the language's own count) in set {name} ({how}); {on}.",
            )
        )
    return section


def warnings_text(ns: NeuronSet) -> str:
    """The warnings `identify` recorded with the set (an AutoSweep λ at the edge of its range, too few tokens per
    language), as sentences to append to the section's introduction; "" when there are none."""
    warnings = [str(w) for w in ns.params.get("warnings") or []]
    edge = (ns.params.get("autosweep") or {}).get("at_edge")
    if edge and not any("AutoSweep" in w for w in warnings):  # a set written before the warnings list existed
        warnings.insert(0, f"AutoSweep chose lambda at the {edge} edge of its search range")
    return "".join(f" Warning: {w.rstrip('.')}." for w in warnings)


def empty_set_text(ns: NeuronSet) -> str:
    """Why a neuron set holds no neuron, in words (the likely cause for the method that made it), so an empty
    section is not a puzzle."""
    k = len(ns.languages)
    text = f"This set ({set_settings(ns)}, {k} languages) selects no neuron, so it has no figure."
    if ns.method == "key-neurons":
        text += (
            f" Key neurons need a z-score above {ns.params.get('threshold', 2)} across the languages; with K "
            f"languages no neuron can exceed z = √(K−1) = {math.sqrt(max(k - 1, 0)):.2f}, so at the default "
            f"threshold of 2 at least 6 languages are needed."
        )
    elif ns.method in ("lape", "entropy-lambda"):
        text += " The selection share (top_rate) rounds to zero neurons, or no neuron passed the filter quantile."
    else:
        text += " The method's threshold left nothing; see its parameters above."
    return text


__all__ = ["empty_set_text", "neuron_set_section", "set_order", "warnings_text"]
