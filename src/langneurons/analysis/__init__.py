"""Analyses of recorded results: sentence similarity (LRDS/SADS), neuron-set analytics, run comparisons."""

from langneurons.analysis.compare import compare_runs
from langneurons.analysis.sets import (
    class_distribution,
    class_transitions,
    language_overlap,
    layer_distribution,
    method_overlap,
    phase_profile,
)
from langneurons.analysis.similarity import load_similarity, save_similarity, similarity
from langneurons.formats.run import Run, load_run

__all__ = [
    "Run",
    "class_distribution",
    "class_transitions",
    "compare_runs",
    "language_overlap",
    "layer_distribution",
    "load_run",
    "load_similarity",
    "method_overlap",
    "phase_profile",
    "save_similarity",
    "similarity",
]
