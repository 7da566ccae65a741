"""Random control sets: same number of neurons in every layer, none of them a language neuron.

The control for language k is drawn, per layer, uniformly without replacement from the neurons
that belong to *no* language of the set (disjoint from the union of all languages' neurons and
from every selected neuron), so a control never silences another language's neurons either.
Seeded with ``seed`` and the language's position, so it is reproducible and differs by language.
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


def random_control(neurons: NeuronSet, lang: str, seed: int = 0) -> torch.Tensor:
    """Bool [L, F]: seeded random neurons, ``lang``'s count in every layer, disjoint from all languages."""
    counts = neurons.mask(lang).sum(1)
    exclude = neurons.selected_mask()
    for other in neurons.languages:
        exclude |= neurons.mask(other)
    return random_mask(counts, exclude, derive_seed(seed, neurons.languages.index(lang)))


def null_control(neurons: NeuronSet, lang: str, seed: int = 0, draw: int = 0) -> torch.Tensor:
    """Bool [L, F]: the ``draw``-th random set with ``lang``'s count per layer, uniform over the whole layer.

    Nothing is excluded, so under the null ("these neurons matter no more than random ones") the real
    set and the draws are exchangeable and the empirical p-value is exact. A control disjoint from the
    real set (`random_control`) is not: if one neuron dominates an effect, a real set that happens to
    hold it beats every control, so such p-values come out too small (docs/methods.md §15).
    """
    counts = neurons.mask(lang).sum(1)
    nothing = torch.zeros(neurons.num_layers, neurons.intermediate_size, dtype=torch.bool)
    return random_mask(counts, nothing, derive_seed(seed, neurons.languages.index(lang), draw))
