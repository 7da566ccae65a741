"""Causal evaluation of neuron sets: the perplexity matrix and steering (docs/methods.md §9)."""

from langneurons.evaluation.langid import identify_language, to_label
from langneurons.evaluation.nll import sequence_nll, text_nll
from langneurons.evaluation.ppl import PPLSettings, ppl_matrix
from langneurons.evaluation.steer import SteerSettings, generate, steer

__all__ = [
    "PPLSettings",
    "SteerSettings",
    "generate",
    "identify_language",
    "ppl_matrix",
    "sequence_nll",
    "steer",
    "text_nll",
    "to_label",
]
