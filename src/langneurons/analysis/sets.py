"""Neuron-set analytics: per-layer distributions, the depth phases, overlap between languages and methods."""

from __future__ import annotations

import math
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import CLASSES, NeuronSet


def layer_distribution(ns: NeuronSet) -> dict[str, list[int]]:
    """Neurons per layer for every language."""
    return {lang: ns.counts_per_layer(lang) for lang in ns.languages}


def class_distribution(ns: NeuronSet) -> dict[str, list[int]]:
    """Neurons per layer for every class (specific, related, agnostic, unassigned)."""
    return {name: mask.sum(1).tolist() for name, mask in ns.class_masks().items()}


def relative_depth(num_layers: int) -> list[float]:
    """Centre of each layer on a 0..1 depth axis: ``(l + 0.5) / L``."""
    return [(layer + 0.5) / num_layers for layer in range(num_layers)]


def segmentations(profile: list[float], max_segments: int = 5, min_length: int = 1) -> dict[int, tuple[float, list]]:
    """For k = 1..``max_segments``: the least-squares split of ``profile`` into k contiguous bands of at
    least ``min_length`` layers each (piecewise constant), as ``{k: (residual sum of squares, bands)}``;
    bands are inclusive ``(start, end)`` layer ranges. Exact dynamic programming, O(k · L²)."""
    y = torch.tensor(profile, dtype=torch.float64)
    n = y.numel()
    min_length = max(1, min(min_length, n))  # a profile shorter than the minimum is one band
    c1 = torch.cat([torch.zeros(1, dtype=torch.float64), y.cumsum(0)])
    c2 = torch.cat([torch.zeros(1, dtype=torch.float64), (y * y).cumsum(0)])
    i = torch.arange(n + 1)
    length = (i[None, :] - i[:, None]).to(torch.float64)  # cost[a, b]: band a..b-1
    s = c1[None, :] - c1[:, None]
    cost = ((c2[None, :] - c2[:, None]) - s * s / length.clamp_min(1)).clamp_min(0)
    cost = torch.where(length >= min_length, cost, torch.full_like(cost, float("inf")))
    best = cost[0].clone()  # best[b]: one band covering 0..b-1
    out: dict[int, tuple[float, list]] = {}
    back: list[torch.Tensor] = []
    for k in range(1, max(1, min(max_segments, n // min_length)) + 1):
        if k > 1:
            best, arg = (best[:, None] + cost).min(0)  # end the previous band at a, a new one a..b-1
            back.append(arg)
        if not torch.isfinite(best[n]):
            break
        bounds, end = [], n
        for arg in reversed(back):
            start = int(arg[end])
            bounds.append((start, end - 1))
            end = start
        bounds.append((0, end - 1))
        out[k] = (float(best[n]), list(reversed(bounds)))
    return out


def segment_profile(profile: list[float], n_segments: int = 4, min_length: int = 1) -> list[tuple[int, int]]:
    """Best split of ``profile`` into ``n_segments`` contiguous bands (least squares, piecewise constant;
    never more bands than fit); inclusive ``(start, end)`` layer ranges."""
    found = segmentations(profile, n_segments, min_length)
    return found[max(found)][1]


def bic(rss: float, n: int, segments: int) -> float:
    """Bayesian information criterion of a piecewise-constant fit with Gaussian noise: n·ln(RSS/n) + p·ln n,
    p = 2k parameters (k levels, k − 1 change points, the noise variance); a perfect fit is floored at
    RSS = 10⁻⁹·n so it is not −∞."""
    return n * math.log(max(rss, 1e-9 * n) / n) + 2 * segments * math.log(n)


PHASE_RULE = (
    "number of phases k in 1..5 chosen by the smallest BIC (n·ln(RSS/n) + 2k·ln n) of the least-squares "
    "piecewise-constant fit of the per-layer counts, each phase at least {min_length} layers"
)


def phase_profile(
    ns: NeuronSet,
    n_phases: int | None = None,
    classes: tuple[str, ...] = ("specific", "related"),
    min_length: int = 2,
    max_phases: int = 5,
) -> dict:
    """The depth profile of ``classes`` neurons, segmented into bands (phases) found from the data.

    The number of phases is chosen by BIC over 1..``max_phases`` (each at least ``min_length`` layers)
    unless ``n_phases`` imposes it: Zhang et al.'s four phases are reported only where the data choose
    them. Each band reports its layers, relative depth, mean neurons per layer, its share of the neurons
    and whether it is ``high`` or ``low`` against the whole-model mean.
    """
    dist = class_distribution(ns)
    profile = [sum(dist[c][layer] for c in classes) for layer in range(ns.num_layers)]
    total = sum(profile)
    mean = total / max(ns.num_layers, 1)
    fits = segmentations([float(v) for v in profile], max(max_phases, n_phases or 0), min_length)
    scores = {k: bic(rss, len(profile), k) for k, (rss, _) in fits.items()}
    chosen = min(scores, key=lambda k: (scores[k], k)) if n_phases is None else min(n_phases, max(fits))
    bands = []
    for start, end in fits[chosen][1]:
        count = sum(profile[start : end + 1])
        per_layer = count / (end - start + 1)
        bands.append(
            {
                "layers": [start, end],
                "relative_depth": [start / ns.num_layers, (end + 1) / ns.num_layers],
                "neurons": count,
                "per_layer": per_layer,
                "share": count / total if total else 0.0,
                "level": "high" if per_layer > mean else "low",
            }
        )
    return {
        "classes": list(classes),
        "profile": profile,
        "n_phases": chosen,
        "chosen_by": "imposed" if n_phases is not None else PHASE_RULE.format(min_length=min_length),
        "bic": {str(k): round(v, 3) for k, v in scores.items()},
        "rss": {str(k): round(rss, 3) for k, (rss, _) in fits.items()},
        "bands": bands,
    }


def language_overlap(ns: NeuronSet) -> dict[str, Any]:
    """Shared neurons between every pair of languages: counts ``[K, K]`` and Jaccard ``[K, K]``."""
    shared = ns.overlap().to(torch.float64)
    own = shared.diagonal()
    union = own[:, None] + own[None, :] - shared
    jaccard = torch.where(union > 0, shared / union.clamp_min(1), torch.zeros_like(shared))
    return {"languages": ns.languages, "shared": shared.to(torch.int64).tolist(), "jaccard": jaccard.tolist()}


def method_overlap(a: NeuronSet, b: NeuronSet) -> dict[str, Any]:
    """Overlap of two sets for the same model: per common language and for the selected neurons."""
    if (a.num_layers, a.intermediate_size) != (b.num_layers, b.intermediate_size):
        raise LangneuronsError(
            f"cannot overlap sets of different shapes ({a.num_layers}×{a.intermediate_size} vs "
            f"{b.num_layers}×{b.intermediate_size})"
        )
    per_language = {}
    for lang in [x for x in a.languages if x in b.languages]:
        per_language[lang] = _overlap(a.mask(lang), b.mask(lang))
    return {
        "methods": [a.method, b.method],
        "per_language": per_language,
        "any_language": _overlap(a.language_counts() > 0, b.language_counts() > 0),
        "selected": _overlap(a.selected_mask(), b.selected_mask()),
    }


def class_transitions(a: NeuronSet, b: NeuronSet) -> dict[str, dict[str, int]]:
    """How neurons moved between classes from ``a`` to ``b`` (same shape): ``{class_a: {class_b: n}}``.

    ``none`` = not selected by that set. Only neurons in at least one of the two sets are counted.
    """
    if (a.num_layers, a.intermediate_size) != (b.num_layers, b.intermediate_size):
        raise LangneuronsError("class transitions need two sets of the same shape")
    names = (*CLASSES, "none")

    def label(ns: NeuronSet) -> torch.Tensor:
        out = torch.full((ns.num_layers, ns.intermediate_size), len(CLASSES), dtype=torch.long)
        for i, mask in enumerate(ns.class_masks().values()):
            out[mask] = i
        return out

    la, lb = label(a).reshape(-1), label(b).reshape(-1)
    table = torch.bincount(la * len(names) + lb, minlength=len(names) ** 2).reshape(len(names), len(names))
    table[-1, -1] = 0
    return {x: {y: int(table[i, j]) for j, y in enumerate(names)} for i, x in enumerate(names)}


def _overlap(ma: torch.Tensor, mb: torch.Tensor) -> dict[str, float | int]:
    na, nb, shared = int(ma.sum()), int(mb.sum()), int((ma & mb).sum())
    union = na + nb - shared
    return {"a": na, "b": nb, "shared": shared, "jaccard": shared / union if union else 0.0}


def set_summary(ns: NeuronSet) -> dict[str, Any]:
    """Everything above for one set, as JSON-ready data."""
    return {
        "method": ns.method,
        "languages": ns.languages,
        "num_layers": ns.num_layers,
        "per_language": layer_distribution(ns),
        "per_class": class_distribution(ns),
        "phases": phase_profile(ns),
        "overlap": language_overlap(ns),
    }


__all__ = [
    "class_distribution",
    "class_transitions",
    "language_overlap",
    "layer_distribution",
    "method_overlap",
    "phase_profile",
    "relative_depth",
    "segment_profile",
    "set_summary",
]
