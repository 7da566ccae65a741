"""Average-precision expertise (Kojima et al. 2024, docs/methods.md §6), from pooled sentence vectors.

Per unit (layer, neuron) the mean-pooled response of each sentence is a score; a language's expertise is the
average precision of that score at separating its sentences (positives) from all other languages' sentences
(negatives), with tied scores handled as one threshold (as scikit-learn's ``average_precision_score``). Per
language the ``n // 2`` units of highest AP and the ``n - n // 2`` of lowest AP are selected. The force value
of each selected unit, its median response on positive sentences (``on_p50``), is stored in
``params["on_p50"]`` as ``{lang: [[values of layer 0, in the order of neurons[lang][0]], ...]}`` so an
intervention can force it (`force_values` turns them into an ``[L, F]`` tensor).
"""

from __future__ import annotations

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.pooled import Pooled
from langneurons.identification.common import Method, source_of, split_layers

BLOCK = 4096  # units per block: bounds memory at about N × BLOCK × 8 bytes per temporary


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AP of every column of ``scores`` ``[N, M]`` for bool ``labels`` ``[K, N]`` → float64 ``[K, M]``.

    Each column is sorted once; ties form one threshold (precision taken at the end of the tied group).
    """
    n, m = scores.shape
    values, order = scores.sort(dim=0, descending=True, stable=True)
    idx = torch.arange(n).unsqueeze(1).expand(n, m)
    # end of the tied group of each sorted position: the next position whose value differs from its successor
    is_end = torch.ones(n, m, dtype=torch.bool)
    is_end[:-1] = values[:-1] != values[1:]
    end = torch.where(is_end, idx, torch.full_like(idx, n)).flip(0).cummin(0).values.flip(0)
    rank = (end + 1).to(torch.float64)
    out = torch.empty(labels.shape[0], m, dtype=torch.float64)
    for k in range(labels.shape[0]):  # a handful of languages, all units at once
        y = labels[k][order].to(torch.float64)  # [N, M] labels in sorted order
        tp = y.cumsum(0)
        precision = tp.gather(0, end) / rank
        positives = labels[k].sum().to(torch.float64)
        out[k] = (y * precision).sum(0) / positives.clamp_min(1)
    return out


def ap_experts(pooled: Pooled, *, n: int = 1000) -> NeuronSet:
    """Per language the ``n // 2`` highest- and ``n - n // 2`` lowest-AP units, with ``on_p50`` values."""
    if n <= 0:
        raise LangneuronsError(f"n must be positive, got {n}")
    k = len(pooled.languages)
    if k < 2:
        raise LangneuronsError("AP expertise needs at least 2 languages (positives and negatives)")
    n_layers, size = pooled.num_layers, pooled.intermediate_size
    total = n_layers * size
    n = min(n, total)
    x = pooled.pooled.reshape(pooled.pooled.shape[0], -1)
    labels_idx = pooled.language_labels()
    labels = torch.nn.functional.one_hot(labels_idx, k).T.bool()  # [K, N]
    ap = torch.empty(k, total, dtype=torch.float64)
    p50 = torch.empty(k, total, dtype=torch.float64)
    for start in range(0, total, BLOCK):
        block = x[:, start : start + BLOCK].to(torch.float64)
        ap[:, start : start + BLOCK] = average_precision(block, labels)
        for i in range(k):
            p50[i, start : start + BLOCK] = block[labels[i]].quantile(0.5, dim=0)
    top_n, bottom_n = n // 2, n - n // 2
    neurons, on_p50, ap_values, chosen = {}, {}, {}, torch.zeros(total, dtype=torch.bool)
    for i, lang in enumerate(pooled.languages):
        order = ap[i].argsort(descending=True, stable=True)
        picked = torch.cat([order[:top_n], order[total - bottom_n :]]).unique()  # sorted
        chosen[picked] = True
        neurons[lang] = split_layers(picked, n_layers, size)
        counts = [len(layer) for layer in neurons[lang]]
        on_p50[lang] = [v.tolist() for v in torch.split(p50[i, picked], counts)]
        ap_values[lang] = [v.tolist() for v in torch.split(ap[i, picked], counts)]
    m = pooled.manifest
    params = {
        "n": n,
        "top": top_n,
        "bottom": bottom_n,
        "score": "mean-pooled sentence response per unit",
        "ties": "one threshold per tied score (scikit-learn average_precision_score)",
        "force": "on_p50: median response on the language's own sentences",
        "on_p50": on_p50,
        "ap": ap_values,
        "positive_rate": {lang: float(labels[i].double().mean()) for i, lang in enumerate(pooled.languages)},
        "sentences": {lang: int(labels[i].sum()) for i, lang in enumerate(pooled.languages)},
    }
    source = source_of(m) | {"pooled": True}
    return NeuronSet(
        languages=pooled.languages,
        num_layers=n_layers,
        intermediate_size=size,
        neurons=neurons,
        selected=split_layers(chosen.nonzero().squeeze(1), n_layers, size),
        method="ap",
        params=params,
        site=m.get("site"),
        model=m.get("model"),
        source=source,
    )


def force_values(ns: NeuronSet, lang: str) -> torch.Tensor:
    """Float32 ``[L, F]`` of the ``on_p50`` force values of ``lang``'s units (NaN elsewhere)."""
    table = (ns.params.get("on_p50") or {}).get(lang)
    if table is None:
        raise LangneuronsError(f"neuron set has no on_p50 values for {lang!r} (only method 'ap' stores them)")
    out = torch.full((ns.num_layers, ns.intermediate_size), float("nan"))
    for layer, (idx, vals) in enumerate(zip(ns.neurons[lang], table, strict=True)):
        out[layer, torch.tensor(idx, dtype=torch.long)] = torch.tensor(vals, dtype=torch.float32)
    return out


METHOD = Method(
    name="ap",
    run=ap_experts,
    summary="average precision of the pooled sentence response per language (Kojima et al. 2024)",
    defaults={"n": 1000},
    input="pooled",
)

__all__ = ["METHOD", "ap_experts", "average_precision", "force_values"]
