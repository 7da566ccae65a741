"""Key linguistic neurons (Zeng et al. 2024, docs/methods.md §7), from pooled sentence vectors.

Each sentence's vector of a layer is normalised to unit L2 norm; a neuron's score for language k is the mean
over ordered same-language pairs i ≠ j of ``h_i[j] · h_j[j]`` (its share of the within-language cosine);
the K scores of each neuron are z-scored across languages (population std); key for k where z > threshold.
With population std the largest possible z is sqrt(K − 1), so z > 2 needs K ≥ 6 languages.
"""

from __future__ import annotations

import math

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.pooled import Pooled
from langneurons.identification.common import Method, source_of, split_layers


def key_scores(pooled: Pooled) -> torch.Tensor:
    """Float64 ``[K, L, F]``: mean over same-language ordered pairs of the product of unit-norm vectors."""
    x = pooled.pooled.to(torch.float64)
    x = x / x.norm(dim=2, keepdim=True).clamp_min(1e-30)
    labels = pooled.language_labels()
    k = len(pooled.languages)
    onehot = torch.nn.functional.one_hot(labels, k).to(torch.float64)  # [N, K]
    n = onehot.sum(0)
    if bool((n < 2).any()):
        raise LangneuronsError("key neurons need at least 2 sentences per language")
    flat = x.reshape(x.shape[0], -1)
    s = onehot.T @ flat  # Σ h        [K, L·F]
    q = onehot.T @ (flat * flat)  # Σ h²  [K, L·F]
    # Σ_{i≠j} h_i h_j = (Σ h)² − Σ h²
    return ((s * s - q) / (n * (n - 1))[:, None]).reshape(k, *x.shape[1:])


def zscore_languages(scores: torch.Tensor) -> torch.Tensor:
    """z-score across the language axis (dim 0), population std; 0 where all languages are equal."""
    mean = scores.mean(0, keepdim=True)
    std = scores.std(0, correction=0, keepdim=True)
    return torch.where(std > 0, (scores - mean) / std.clamp_min(1e-300), torch.zeros_like(scores))


def min_languages(threshold: float) -> int:
    """The fewest languages K for which z > ``threshold`` is possible at all: the largest z-score over
    K values (population std) is sqrt(K − 1), so K − 1 > threshold² (6 for the default 2)."""
    return max(2, math.floor(max(threshold, 0.0) ** 2) + 2)


def key_neurons(pooled: Pooled, *, threshold: float = 2.0) -> NeuronSet:
    """Neurons whose within-language similarity share has z > ``threshold`` for a language."""
    k = len(pooled.languages)
    if k < 2:
        raise LangneuronsError("key neurons need at least 2 languages")
    need = min_languages(threshold)
    if k < need:
        raise LangneuronsError(
            f"key neurons with z > {threshold:g} need at least {need} languages (with {k} the largest "
            f"possible z-score is sqrt({k}-1) = {math.sqrt(k - 1):.2f}, so no neuron could be selected): "
            "pool more languages or lower --threshold"
        )
    z = zscore_languages(key_scores(pooled))
    assigned = z > threshold  # [K, L, F]
    n_layers, size = pooled.num_layers, pooled.intermediate_size
    selected = assigned.any(0).reshape(-1).nonzero().squeeze(1)
    neurons = {
        lang: split_layers(assigned[i].reshape(-1).nonzero().squeeze(1), n_layers, size)
        for i, lang in enumerate(pooled.languages)
    }
    m = pooled.manifest
    params = {
        "threshold": threshold,
        "zscore": "across languages, population std (max z = sqrt(K-1))",
        "max_possible_z": math.sqrt(k - 1),
        "normalisation": "unit L2 norm per sentence and layer",
        "score": "mean over same-language ordered pairs i != j of h_i * h_j",
        "per_layer_counts": {lang: [len(x) for x in neurons[lang]] for lang in pooled.languages},
        "n_selected": int(selected.numel()),
        "sentences": {lang: int(len(pooled.rows(lang))) for lang in pooled.languages},
    }
    return NeuronSet(
        languages=pooled.languages,
        num_layers=n_layers,
        intermediate_size=size,
        neurons=neurons,
        selected=split_layers(selected, n_layers, size),
        method="key-neurons",
        params=params,
        site=m.get("site"),
        model=m.get("model"),
        source=source_of(pooled.manifest) | {"pooled": True},
    )



METHOD = Method(
    name="key-neurons",
    run=key_neurons,
    summary="z > 2 share of within-language sentence similarity (Zeng et al. 2024); needs pooled vectors",
    defaults={"threshold": 2.0},
    input="pooled",
)

__all__ = ["METHOD", "key_neurons", "key_scores", "zscore_languages"]
