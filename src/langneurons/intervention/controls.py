"""Random control sets: same number of neurons in every layer, none of them a language neuron.

The control for language k is drawn, per layer, uniformly without replacement from the neurons
that belong to *no* language of the set (disjoint from the union of all languages' neurons and
from every selected neuron), so a control never silences another language's neurons either.
Seeded with ``seed`` and the language's position, so it is reproducible and differs by language.

Mixture-of-experts sets (``source.moe``, docs/formats.md) are drawn only from columns that exist in
the layer (never from the padding of a narrower dense layer or shared expert) and stratified by
expert: where the set has n_e neurons in expert e of a layer, the control draws n_e neurons of expert
e (the shared expert and a dense layer are one stratum each), so it matches the set's count per layer
*and* how often its neurons' experts are used (docs/methods.md §8). A set that itself holds padding
columns (which never fire) gets as many padding columns of the same layer in its control. Sets without a
layout (dense models) are drawn exactly as before, bit for bit.
"""

from __future__ import annotations

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet

SEED_STRIDE = 1_000_003  # seeds of different runs stay apart for up to a million controls each (a prime)
CONTROL_STRIDE = 1_000_000_007  # seed offset between the null draws of one language (a prime)


def derive_seed(seed: int, index: int = 0, draw: int | None = None) -> int:
    """The seed of control number ``index`` (a language's or a component's position) of a run seeded with
    ``seed``; ``draw`` r ≥ 0: its r-th null draw. The one formula every control uses."""
    return int(seed) * SEED_STRIDE + int(index) + (0 if draw is None else (int(draw) + 1) * CONTROL_STRIDE)


def random_mask(count_per_layer: torch.Tensor, exclude: torch.Tensor, seed: int) -> torch.Tensor:
    """Bool [L, F] with ``count_per_layer[l]`` random True per layer, never where ``exclude`` is True."""
    num_layers, size = exclude.shape
    free = (~exclude).sum(1)
    if bool((count_per_layer > free).any()):
        layer = int((count_per_layer > free).nonzero()[0])
        raise LangneuronsError(f"layer {layer} has too few free neurons for a matched random control")
    gen = torch.Generator().manual_seed(int(seed))
    keys = torch.rand(num_layers, size, generator=gen)
    keys[exclude] = 2.0  # excluded neurons sort last
    order = keys.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(size).expand(num_layers, size).contiguous())
    return ranks < count_per_layer.view(-1, 1)


def stratified_mask(counts: torch.Tensor, groups: torch.Tensor, exclude: torch.Tensor, seed: int) -> torch.Tensor:
    """Bool [L, F] with ``counts[l, g]`` random True among layer l's columns of group g (``groups`` [L, F],
    -1: a column that is no neuron, never drawn), never where ``exclude`` is True.

    One ``torch.rand(L, F)`` from ``seed`` gives every column a key, as in `random_mask`; a group takes its
    ``counts[l, g]`` lowest keys among its free columns.
    """
    num_layers, size = groups.shape
    n_groups = counts.shape[1]
    usable = (groups >= 0) & ~exclude
    free = torch.zeros(num_layers, n_groups, dtype=torch.int64).scatter_add_(1, groups.clamp(min=0), usable.long())
    short = counts > free
    if bool(short.any()):
        layer, group = (int(x) for x in short.nonzero()[0])
        raise LangneuronsError(
            f"layer {layer} has too few free neurons in unit {group} (expert {group}, or the shared expert after "
            f"the routed ones; 0 in a dense layer) for a matched random control: {int(counts[layer, group])} "
            f"needed, {int(free[layer, group])} free"
        )
    gen = torch.Generator().manual_seed(int(seed))
    keys = torch.rand(num_layers, size, generator=gen)
    need = torch.cat([counts.to(torch.int64), torch.zeros(num_layers, 1, dtype=torch.int64)], dim=1)
    out = torch.zeros(num_layers, size, dtype=torch.bool)
    for layer in range(num_layers):  # one layer at a time: a few [F] temporaries, not [L, F] ones
        group = torch.where(groups[layer] >= 0, groups[layer], n_groups)  # non-neurons: a last group, never drawn
        key = keys[layer].to(torch.float64).masked_fill_(~usable[layer], 2.0)  # taken: last within the group
        order = (group.to(torch.float64) * 4.0 + key).argsort()  # group-major (exact in float64), then by key
        ordered = group[order]
        rank = torch.arange(size) - torch.searchsorted(ordered, ordered)  # position within its group
        out[layer, order] = rank < need[layer, ordered]
    return out


def _matched(neurons: NeuronSet, lang: str, exclude: torch.Tensor, seed: int) -> torch.Tensor:
    """``lang``'s count per layer (per expert, for an MoE set) drawn at random outside ``exclude``."""
    real = neurons.mask(lang)
    groups = neurons.column_groups()
    if groups is None:  # dense: exactly the draw of earlier versions
        return random_mask(real.sum(1), exclude, seed)
    n_groups = int(groups.max()) + 1
    if bool((real & (groups < 0)).any()):  # the set holds padding (e.g. AP ranks never-firing columns too):
        groups = torch.where(groups >= 0, groups, n_groups)  # match those no-ops with padding, layer by layer
        n_groups += 1
    counts = torch.zeros(neurons.num_layers, n_groups, dtype=torch.int64)
    counts.scatter_add_(1, groups.clamp(min=0), real.long())
    return stratified_mask(counts, groups, exclude, seed)


def random_control(neurons: NeuronSet, lang: str, seed: int = 0) -> torch.Tensor:
    """Bool [L, F]: seeded random neurons, ``lang``'s count in every layer (and, for an MoE set, in every
    expert), disjoint from all languages and from every selected neuron."""
    exclude = neurons.selected_mask()
    for other in neurons.languages:
        exclude |= neurons.mask(other)
    return _matched(neurons, lang, exclude, derive_seed(seed, neurons.languages.index(lang)))


def matched_control(neurons: NeuronSet, lang: str, seed: int = 0, fallback_draw: int = 1) -> torch.Tensor:
    """`random_control`; for a head set (few heads per layer, where a disjoint draw can run out of free heads)
    the ``fallback_draw``-th `null_control` (nothing excluded) where the disjoint draw is impossible."""
    try:
        return random_control(neurons, lang, seed)
    except LangneuronsError:
        if neurons.site != "heads":
            raise
        return null_control(neurons, lang, seed, fallback_draw)


def null_control(neurons: NeuronSet, lang: str, seed: int = 0, draw: int = 0) -> torch.Tensor:
    """Bool [L, F]: the ``draw``-th random set with ``lang``'s count per layer, uniform over the whole layer
    (for an MoE set: over the layer's existing neurons, ``lang``'s count in every expert).

    Nothing is excluded, so under the null ("these neurons matter no more than random ones" of the same
    layers and experts) the real set and the draws are exchangeable and the empirical p-value is exact.
    A control disjoint from the real set (`random_control`) is not: if one neuron dominates an effect, a
    real set that happens to hold it beats every control, so such p-values come out too small
    (docs/methods.md §15). Nor is a draw over padding columns that never fire: it is weaker than any set.
    """
    nothing = torch.zeros(neurons.num_layers, neurons.intermediate_size, dtype=torch.bool)
    return _matched(neurons, lang, nothing, derive_seed(seed, neurons.languages.index(lang), draw))
