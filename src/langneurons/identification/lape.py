"""LAPE, language activation probability entropy (Tang et al. 2024), docs/methods.md §3."""

from __future__ import annotations

import math

import torch

from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.identification.common import (
    TIE_BREAK,
    Method,
    assign_languages,
    build_set,
    check_rate,
    existing_neurons,
    lape_entropy,
    probabilities,
    quantile_bar,
    select_lowest,
)


def lape(
    stats: Stats, *, top_rate: float = 0.01, filter_rate: float = 0.95, bar_ratio: float = 0.95
) -> NeuronSet:
    """Select the ``round(top_rate·N)`` lowest-entropy neurons among those that pass the filter quantile.

    A selected neuron belongs to language k iff ``p[k] > kthvalue(p, round(bar_ratio·K·N))``. Neurons
    that fail the filter (entropy +inf) are never selected, so fewer come back when too few pass.
    N = L·F, or for a mixture-of-experts run the neurons that exist (padding columns are no neurons and
    enter neither the count nor the quantiles).
    """
    top_rate = check_rate("top_rate", top_rate)
    filter_rate = check_rate("filter_rate", filter_rate)
    bar_ratio = check_rate("bar_ratio", bar_ratio)
    p = probabilities(stats)
    existing = existing_neurons(stats)
    n_neurons = p.shape[1] if existing is None else int(existing.sum())
    absent = p.shape[0] * (p.shape[1] - n_neurons)  # zeros of padding columns: not ranked
    filter_bar = quantile_bar(p, filter_rate, absent)
    bar = filter_bar if bar_ratio == filter_rate else quantile_bar(p, bar_ratio, absent)
    passed = p.amax(0) > filter_bar
    if existing is not None:
        passed &= existing
    candidates = passed.nonzero().squeeze(1)
    entropy = torch.full((p.shape[1],), math.inf, dtype=p.dtype)  # +inf: failed the filter
    entropy[candidates] = lape_entropy(p.index_select(1, candidates))
    target = round(top_rate * n_neurons)
    selected = select_lowest(entropy, target)
    assigned = assign_languages(p, selected, bar)
    params = {
        "top_rate": top_rate,
        "filter_rate": filter_rate,
        "bar_ratio": bar_ratio,
        "filter_bar": filter_bar,
        "bar": bar,
        "n_target": target,
        "n_selected": int(selected.numel()),
        "n_passed_filter": int(candidates.numel()),
        "probability": "max(count, 0) / max(n_tokens, 1), float64",
        "tie_break": TIE_BREAK,
    }
    if existing is not None:
        params["n_existing"] = n_neurons
    return build_set(stats, "lape", selected, assigned, params)


METHOD = Method(
    name="lape",
    run=lape,
    summary="lowest entropy of the per-language activation probabilities (Tang et al. 2024)",
    defaults={"top_rate": 0.01, "filter_rate": 0.95, "bar_ratio": 0.95},
)

__all__ = ["METHOD", "lape"]
