"""The similarity section: LRDS and SADS per layer (`langneurons similarity`), whole-model values in the text."""

from __future__ import annotations

import json
from typing import Any

import langneurons.reporting.figures as fig
from langneurons.reporting.sections.common import Figure, Section, number_text

TEMPLATE = "section_similarity.html"


def similarity_section(sim: dict[str, Any]) -> Section:
    """LRDS and SADS per layer with a caption saying how they were measured, and the whole-model values."""
    peaks = sim.get("peaks") or {}
    pairs = sim.get("pairs") or {}
    whole = sim.get("whole_model") if isinstance(sim.get("whole_model"), dict) else {}
    text = (
        f"LRDS = mean cosine of same-language pairs − different-language pairs; SADS = mean cosine of "
        f"translation pairs (same sentence id, different language) − different-id pairs in different "
        f"languages; self-pairs excluded; mean-pooled activations at site {sim.get('site')}; model "
        f"{sim.get('model')}; corpus {sim.get('corpus')} (sha256 {str(sim.get('corpus_sha256'))[:12]}…), "
        f"{_sentences_text(sim)}; pairs per side: {json.dumps(pairs)}. Dashed lines: the same scores for the "
        f"whole model (all layers' vectors joined). {_bands_text(sim)}"
        f"Highest: LRDS at layer {(peaks.get('lrds') or {}).get('layer')}{_peak_text(peaks.get('lrds'))}, "
        f"SADS at layer {(peaks.get('sads') or {}).get('layer')}{_peak_text(peaks.get('sads'))}."
    )
    intro = (
        "Whole model: " + ", ".join(f"{k.upper()} {number_text(v)}" for k, v in whole.items()) + "."
        if whole
        else ""
    )
    return Section(
        "similarity",
        "Activation similarity across languages",
        TEMPLATE,
        intro,
        [Figure("similarity.png", fig.similarity_figure(sim), "LRDS and SADS per layer", text)],
    )


def _bands_text(sim: dict[str, Any]) -> str:
    boot = sim.get("bootstrap") or {}
    if not boot:
        return "No bootstrap bands (similarity run with --bootstrap 0): peaks are not tested. "
    return (f"Shaded: 95 % bands over {boot.get('resamples')} resamples of the {boot.get('unit', 'sentences')}; "
            f"{boot.get('peak_rule', '')}. ")  # fmt: skip


def _peak_text(peak: dict[str, Any] | None) -> str:
    if not peak or "stands_out" not in peak:
        return ""
    return " (a peak: outside the other layers' bands)" if peak["stands_out"] else " (not a clear peak)"


def _sentences_text(sim: dict[str, Any]) -> str:
    sentences = sim.get("sentences") or {}
    if not sentences:
        return "sentences unknown"
    values = set(sentences.values())
    return (
        f"{len(sentences)} languages × {values.pop()} sentences"
        if len(values) == 1
        else f"{sum(sentences.values())} sentences in {len(sentences)} languages"
    )


__all__ = ["similarity_section"]
