"""Shared pieces of the identification methods: probabilities, quantile bars, selection, assignment.

Layout: statistics are ``[K, L, F]``; the methods work on ``p`` of shape ``[K, M]`` with ``M = L·F`` and
neuron ``(l, j)`` at flat index ``l·F + j`` (layer-major, the order in which the reference implementations
flatten their ``[L, F]`` scores). All arithmetic is float64. In a mixture-of-experts run some columns are
padding (a dense layer or shared expert narrower than the widest layer, docs/formats.md): they are no
neurons, and counts, ranks and quantiles take only the existing ones (`existing_neurons`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet, existing_columns, moe_layout
from langneurons.formats.stats import Stats
from langneurons.version import __version__

# Neurons per block in the entropy loops: few, large blocks (fewer thread-pool rounds, which cost
# most on a busy machine) while keeping each temporary near 20 MB for K = 10.
BLOCK = 1 << 18
# Above this many values the exact quantile is found through a sampled bracket (see `quantile_bar`).
BRACKET_MIN = 1 << 20
TIE_BREAK = "lowest flat index (layer, then neuron) among equal scores"


@dataclass(frozen=True)
class Method:
    """One identification method: registry name, function ``run(data, **params)``, one-line summary.

    ``input`` names what ``run`` takes first: ``"stats"`` (a `Stats`) or e.g. ``"pooled"`` (sentence vectors).
    """

    name: str
    run: Callable[..., NeuronSet]
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)
    input: str = "stats"


def check_rate(name: str, value: float) -> float:
    """Rates (top_rate, filter_rate, bar_ratio) must lie in (0, 1]."""
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise LangneuronsError(f"{name} must be in (0, 1], got {value}")
    return value


def probabilities(stats: Stats) -> torch.Tensor:
    """Activation probability ``p[k, l·F + j] = max(count, 0) / max(n_tokens, 1)`` as float64 ``[K, M]``.

    With ``manifest["condition"] == "routed"`` (MoE, see `conditioned`) a routed expert's neurons divide by
    the tokens routed to that expert instead.
    """
    k = stats.count.shape[0]
    p = stats.count.reshape(k, -1).to(torch.float64).clamp_min_(0.0)
    condition = stats.manifest.get("condition", "unconditional")
    if condition != "unconditional":
        return p.div_(stats.denominator(condition).expand(*stats.count.shape).reshape(k, -1))
    return p.div_(stats.n_tokens.clamp_min(1).to(torch.float64).view(k, 1))


CONDITIONS = ("unconditional", "routed")


def conditioned(stats: Stats, condition: str) -> Stats:
    """The statistics with the activation probability ``condition`` (docs/methods.md §12) that `probabilities` uses."""
    if condition not in CONDITIONS:
        raise LangneuronsError(f"unknown condition {condition!r}; choose {' or '.join(CONDITIONS)}")
    stats.denominator(condition)  # one-line error for `routed` on a dense model
    return Stats(stats.count, stats.sum, stats.sum_sq, stats.n_tokens,
                 {**stats.manifest, "condition": condition}, stats.path, extra=stats.extra)  # fmt: skip


def existing_neurons(stats: Stats) -> torch.Tensor | None:
    """Bool ``[L·F]`` (flat, as `probabilities`): the columns that are neurons of their layer, from the
    manifest's ``moe`` layout; None when every column is one (dense models).

    Padding columns never fire; a count there means the layout does not describe these statistics.
    """
    moe = stats.manifest.get("moe")
    if not moe:
        return None
    existing = existing_columns(moe, stats.num_layers, stats.intermediate_size)
    if bool(existing.all()):
        return None
    if bool(stats.count[:, ~existing].any()):
        raise LangneuronsError(
            f"{stats.path or 'these statistics'}: activity in columns that the moe layout says do not exist"
        )
    return existing.reshape(-1)


def kth_rank(n: int, ratio: float) -> int:
    """1-based rank ``round(ratio · n)`` for torch.kthvalue (Python round, as the references), in [1, n]."""
    return min(max(round(ratio * n), 1), n)


def quantile_bar(p: torch.Tensor, ratio: float, absent: int = 0) -> float:
    """Exactly ``p.flatten().kthvalue(round(ratio · p.numel())).values``, without a full selection.

    ``absent``: that many of ``p``'s values are zeros of columns that are no neurons (MoE padding) and
    ``p ≥ 0``; the rank counts only the others, ``round(ratio · (numel − absent))``. Since those zeros sort
    first, that is the value at rank ``absent +`` it among all — no copy of the existing values is needed.

    For large inputs a strided sample gives a bracket [lo, hi] around the rank; when counting proves the
    k-th value lies inside it, only the values in the bracket are searched. Otherwise plain kthvalue.
    """
    flat = p.reshape(-1)
    n = flat.numel()
    k = kth_rank(n - absent, ratio) + absent
    if n < BRACKET_MIN:
        return float(flat.kthvalue(k).values)
    sample = flat[:: n // (1 << 16)].sort().values
    m = sample.numel()
    pos = (k - 1) * m / n
    q = k / n if absent else ratio  # the rank's share of all values
    margin = 8.0 * math.sqrt(m * q * (1.0 - q)) + 16.0
    lo_i, hi_i = int(pos - margin), int(pos + margin) + 1
    lo = float(sample[lo_i]) if lo_i >= 0 else -math.inf
    hi = float(sample[hi_i]) if hi_i < m else math.inf
    inside = flat >= lo
    below = n - int(torch.count_nonzero(inside))
    window = flat[inside.logical_and_(flat <= hi)]
    if below < k <= below + window.numel():
        return float(window.kthvalue(k - below).values)
    return float(flat.kthvalue(k).values)  # pragma: no cover - the bracket missed (adversarial data)


def select_lowest(score: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted flat indices of the ``k`` lowest finite scores; ties at the boundary go to the lowest index.

    Non-finite scores are never selected, so fewer than ``k`` come back when fewer are finite.
    """
    k = min(int(k), int(torch.isfinite(score).sum()))
    if k <= 0:
        return torch.zeros(0, dtype=torch.long)
    if k < score.numel():
        values, index = torch.topk(score, k + 1, largest=False, sorted=True)
        if values[k] > values[k - 1]:  # no tie across the boundary: topk's set is the set
            return index[:k].sort().values
    edge = torch.topk(score, k, largest=False, sorted=True).values[k - 1]
    below = (score < edge).nonzero().squeeze(1)
    ties = (score == edge).nonzero().squeeze(1)[: k - below.numel()]
    return torch.cat([below, ties]).sort().values


def assign_languages(p: torch.Tensor, selected: torch.Tensor, bar: float) -> torch.Tensor:
    """Bool ``[K, len(selected)]``: selected neuron j belongs to language k iff ``p[k, j] > bar``."""
    return p[:, selected] > bar


def lape_entropy(p: torch.Tensor) -> torch.Tensor:
    """Tang et al.: ``H = −Σ_k p̃ log p̃`` with ``p̃ = p / Σ_k p`` (0 where the sum is 0; 0·log 0 = 0)."""

    def entropy(block: torch.Tensor) -> torch.Tensor:
        total = block.sum(0)
        q = block / total
        if bool((total == 0).any()):
            q.masked_fill_(total == 0, 0.0)
        return torch.xlogy(q, q).sum(0).neg_()

    return by_column_blocks(p, entropy)


def by_column_blocks(p: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` applied to ``p``'s columns ``BLOCK`` at a time (a 70B model's [K, L·F] in bounded memory)."""
    out = torch.empty(p.shape[1], dtype=p.dtype)
    for start in range(0, p.shape[1], BLOCK):
        out[start : start + BLOCK] = fn(p[:, start : start + BLOCK])
    return out


def zhang_normalised_entropy(p: torch.Tensor) -> torch.Tensor:
    """Zhang et al.: ``H(p̃) / log K`` with ``p̃`` uniform where ``Σ_k p = 0``, ``q = clamp(p̃, 1e-12)``,
    ``q = q / Σ q``, ``H = −Σ q log(q + 1e-30)``."""
    k = p.shape[0]
    log_k = math.log(k) if k > 1 else 1.0

    def entropy(block: torch.Tensor) -> torch.Tensor:
        total = block.sum(0)
        q = block / total
        if bool((total == 0).any()):
            q.masked_fill_(total == 0, 1.0 / k)
        q.clamp_min_(1e-12)
        q.div_(q.sum(0))
        return (q + 1e-30).log_().mul_(q).sum(0).neg_().div_(log_k)

    return by_column_blocks(p, entropy)


def subset_languages(stats: Stats, languages: Sequence[str] | None) -> Stats:
    """The statistics restricted to ``languages`` (in that order); all languages when None."""
    if not languages:
        return stats
    languages = list(languages)
    if len(set(languages)) != len(languages):
        raise LangneuronsError(f"a language is repeated in {','.join(languages)}")
    index = torch.tensor([stats.language_index(lang) for lang in languages], dtype=torch.long)
    manifest = {**stats.manifest, "languages": languages}
    return Stats(
        stats.count.index_select(0, index),
        stats.sum.index_select(0, index),
        stats.sum_sq.index_select(0, index),
        stats.n_tokens.index_select(0, index),
        manifest,
        stats.path,
        extra={name: t.index_select(0, index) for name, t in stats.extra.items()},
    )


def source_of(manifest: dict[str, Any]) -> dict[str, Any]:
    """Where a neuron set came from: the recording's corpus, its hash and the versions involved."""
    m = manifest
    keys = ("corpus", "corpus_sha256", "revision", "dtype", "langneurons_version")
    source = {key: m.get(key) for key in keys}
    source["identified_with"] = f"langneurons {__version__}"
    layout = moe_layout(m.get("moe"))
    if layout:  # which columns are neurons and of which expert: what matched controls need
        source["moe"] = layout
    return source


def build_set(
    stats: Stats,
    method: str,
    selected: torch.Tensor,
    assigned: torch.Tensor,
    params: dict[str, Any],
) -> NeuronSet:
    """A NeuronSet from sorted flat ``selected`` indices and ``assigned`` (bool ``[K, len(selected)]``)."""
    num_layers, size = stats.num_layers, stats.intermediate_size
    neurons = {
        lang: split_layers(selected[assigned[i]], num_layers, size) for i, lang in enumerate(stats.languages)
    }
    return NeuronSet(
        languages=stats.languages,
        num_layers=num_layers,
        intermediate_size=size,
        neurons=neurons,
        selected=split_layers(selected, num_layers, size),
        method=method,
        params=params,
        site=stats.manifest.get("site"),
        model=stats.manifest.get("model"),
        source=source_of(stats.manifest),
    )


def split_layers(flat: torch.Tensor, num_layers: int, size: int) -> list[list[int]]:
    """Sorted flat indices ``l·F + j`` → per layer lists of ``j``."""
    flat = flat.to(torch.long)
    per_layer = torch.bincount(flat // size, minlength=num_layers).tolist()
    return [chunk.tolist() for chunk in torch.split(flat % size, per_layer)]
