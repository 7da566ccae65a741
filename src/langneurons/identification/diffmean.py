"""Residual-stream difference of means (DiffMean, docs/methods.md §13): pure math on recorded sums.

μ[k, l] = Σ h_l / n_tokens[k] over language k's counted tokens, d[k, l] = μ[k, l] − mean_{j≠k} μ[j, l];
r_l = mean over languages of the mean residual norm (‖h_l‖ averaged over tokens), which scales steering.
"""

from __future__ import annotations

import time

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.directions import DirectionSet
from langneurons.formats.provenance import now, software
from langneurons.formats.stats import Stats
from langneurons.identification.common import source_of


def residual_means(stats: Stats) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ float64 [K, L, H], mean residual norm float64 [K, L]) per language and layer."""
    if not stats.has_residual:
        where = stats.path or "these statistics"
        raise LangneuronsError(
            f"{where} holds no residual-stream sums: record the run again with this version of "
            "`langneurons record` (without --no-residual)"
        )
    if bool((stats.n_tokens <= 0).any()):
        empty = [lang for lang, n in zip(stats.languages, stats.n_tokens.tolist(), strict=True) if n <= 0]
        raise LangneuronsError(f"no counted tokens for {','.join(empty)}")
    n = stats.n_tokens.to(torch.float64)
    return stats.resid_sum / n.view(-1, 1, 1), stats.resid_norm_sum / n.view(-1, 1)


def diffmean(stats: Stats) -> DirectionSet:
    """Per language and layer, the direction μ[lang] − mean of the other languages' μ."""
    started = time.time()
    if len(stats.languages) < 2:
        raise LangneuronsError("diffmean needs statistics of at least two languages")
    mu, norms = residual_means(stats)
    k = mu.shape[0]
    others = (mu.sum(0, keepdim=True) - mu) / (k - 1)
    directions = (mu - others).float()
    return DirectionSet(
        list(stats.languages),
        directions,
        norms.mean(0).float(),
        method="diffmean",
        model=stats.manifest.get("model"),
        params={"others": "unweighted mean of the other languages' means", "r_l": "mean over languages"},
        source=source_of(stats.manifest) | {"run": stats.path},
        provenance={"created": now(), "wall_seconds": round(time.time() - started, 3), **software()},
        mean=mu.mean(0).float(),
    )
