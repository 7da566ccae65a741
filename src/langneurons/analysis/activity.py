"""What recorded statistics say before any neuron is selected: firing rates and how alike languages fire.

Pure functions of a :class:`~langneurons.formats.stats.Stats` (docs/methods.md, "What is recorded").
"""

from __future__ import annotations

from typing import Any

import torch

from langneurons.formats.stats import Stats


def activation_rate(stats: Stats) -> torch.Tensor:
    """Mean activation probability over each layer's neurons, per language: [K, L] float64.

    ``rate[k, l] = mean_j count[k, l, j] / n_tokens[k]`` — the share of (token, neuron) pairs of
    layer l with activation > 0 on language k's text.
    """
    return stats.probability().mean(dim=2)


def profile_similarity(stats: Stats) -> torch.Tensor:
    """Pearson correlation of the languages' activation-probability profiles over all L·F neurons: [K, K].

    1 = two languages make every neuron fire equally often (up to scale and offset); a language
    without tokens gets NaN rows. Correlation, not cosine: probabilities share a large common part
    that would put every cosine near 1.
    """
    p = stats.probability().flatten(1)  # [K, L·F]
    centred = p - p.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)
    corr = (centred @ centred.T) / (norm[:, None] * norm[None, :])
    return torch.where(stats.n_tokens[:, None] * stats.n_tokens[None, :] > 0, corr, torch.nan)


def recording_summary(stats: Stats) -> dict[str, Any]:
    """Tokens and sentences counted per language, firing rates per layer and the profile correlation."""
    sentences = stats.manifest.get("sentences") or {}
    return {
        "languages": stats.languages,
        "tokens": {lang: int(n) for lang, n in zip(stats.languages, stats.n_tokens.tolist(), strict=True)},
        "sentences": {lang: sentences.get(lang) for lang in stats.languages},
        "activation_rate": activation_rate(stats).tolist(),
        "profile_correlation": profile_similarity(stats).tolist(),
    }


__all__ = ["activation_rate", "profile_similarity", "recording_summary"]
