"""What an intervention is: a neuron mask, an affine edit of those neurons, where it applies.

Every mode is the per-neuron affine map ``x ← a·x + b`` on the chosen (layer, neuron) entries
(docs/methods.md §8), so any list of interventions runs as a few vectorised index operations per layer:

  deactivate  a = s,  b = 0              (s = strength, default 0: zeroing; 0 < s < 1 damps)
  replace     a = 0,  b = s·mean_target  (Tang-style replacement; s = 1 is the plain mean)
  add         a = 1,  b = s·mean_target
  diffmean    a = 1,  b = s·(mean_target − mean_others)
  force       a = 0,  b = value          (a fixed value, e.g. Kojima's positive-median)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.neuronset import NeuronSet
from langneurons.formats.stats import Stats
from langneurons.models.base import HEADS, SITES
from langneurons.models.loading import LoadedModel

MODES = ("deactivate", "replace", "add", "diffmean", "force")
ACTIVATION_MODES = ("replace", "add", "diffmean")
POSITIONS = ("all", "prompt", "generated")


@dataclass(frozen=True)
class Intervention:
    """Edit ``x ← scale·x + shift`` on the neurons in ``mask`` (bool [L, F]) at ``site`` and ``positions``."""

    mask: torch.Tensor
    scale: torch.Tensor  # float [L, F], used where mask is True
    shift: torch.Tensor  # float [L, F], used where mask is True
    site: str = "act"
    positions: str = "all"
    label: str = ""
    rows: tuple[int, int] | None = None  # batch rows [start, stop) it applies to (None: every row)

    def __post_init__(self) -> None:
        check_rows(self.rows)
        if self.site not in (*SITES, HEADS):
            raise LangneuronsError(f"unknown site {self.site!r}; choose one of {', '.join(SITES)} (or {HEADS})")
        if self.site == HEADS and bool(self.shift[self.mask].ne(0).any()):
            raise LangneuronsError("an intervention on attention heads scales them (deactivate); it cannot add a shift")
        if self.positions not in POSITIONS:
            raise LangneuronsError(
                f"unknown positions {self.positions!r}; choose one of {', '.join(POSITIONS)}"
            )
        if self.mask.dtype != torch.bool or self.mask.dim() != 2:
            raise LangneuronsError("an intervention mask must be a bool tensor [layers, neurons]")
        if self.scale.shape != self.mask.shape or self.shift.shape != self.mask.shape:
            raise LangneuronsError("intervention scale/shift must have the mask's shape [layers, neurons]")

    @property
    def n_neurons(self) -> int:
        """How many neurons the edit touches."""
        return int(self.mask.sum())

    def __repr__(self) -> str:
        layers = self.mask.any(1).nonzero().reshape(-1).tolist()
        shown = ",".join(map(str, layers[:6])) + (",…" if len(layers) > 6 else "")
        where = "" if self.positions == "all" else f", positions {self.positions}"
        rows = "" if self.rows is None else f", rows {self.rows[0]}–{self.rows[1]}"
        label = f"{self.label}: " if self.label else ""
        return (f"Intervention({label}{self.n_neurons} neurons in layers {shown or '–'} at {self.site}"
                f"{where}{rows})")  # fmt: skip


def check_rows(rows: tuple[int, int] | None) -> None:
    if rows is not None and not 0 <= rows[0] < rows[1]:
        raise LangneuronsError(f"intervention rows must be [start, stop) with 0 ≤ start < stop, got {rows}")


T = TypeVar("T")


def on_rows(interventions: list[T], start: int, stop: int) -> list[T]:
    """The same interventions limited to batch rows [start, stop): several conditions then share one
    batch (one generation pass), each row edited only by its own condition's interventions."""
    return [replace(iv, rows=(start, stop)) for iv in interventions]  # type: ignore[type-var]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise LangneuronsError(f"unknown intervention mode {mode!r}; choose one of {', '.join(MODES)}")


def deactivate(
    mask: torch.Tensor | NeuronSet,
    strength: float | str = 0.0,
    set_strength: float = 0.0,
    *,
    site: str | None = None,
    positions: str = "all",
    label: str = "",
) -> Intervention:
    """Multiply the masked neurons by ``strength`` (0 = zero them, as Tang et al. and Zeng et al.).

    ``deactivate(mask, 0.5)`` or, naming a language of a set, ``deactivate(neuron_set, "fr"[, 0.5])``
    (then the third argument is the strength; site: the set's).
    """
    if isinstance(mask, NeuronSet):
        if not isinstance(strength, str):
            raise LangneuronsError('deactivate(neuron_set, "lang"[, strength]): name the language')
        ns, lang, strength = mask, strength, set_strength
        mask, site, label = ns.mask(lang), site or ns.site, label or f"off {lang}"
    elif isinstance(strength, str):
        raise LangneuronsError(f'deactivate(mask, strength): a language ({strength!r}) needs a neuron set')
    site = site or "act"
    mask = mask.bool()
    scale = torch.full(mask.shape, float(strength), dtype=torch.float64)
    return Intervention(mask, scale, torch.zeros(mask.shape, dtype=torch.float64), site, positions, label)


def force(
    mask: torch.Tensor,
    value: float | torch.Tensor,
    *,
    site: str = "act",
    positions: str = "all",
    label: str = "",
) -> Intervention:
    """Set the masked neurons to a fixed ``value`` (a number or a [L, F] tensor, e.g. a median)."""
    mask = mask.bool()
    shift = torch.as_tensor(value, dtype=torch.float64).expand(mask.shape).clone()
    return Intervention(mask, torch.zeros(mask.shape, dtype=torch.float64), shift, site, positions, label)


def activate(
    mask: torch.Tensor | NeuronSet,
    stats: Stats | str,
    lang: str | Stats,
    mode: str = "replace",
    strength: float = 1.0,
    *,
    site: str | None = None,
    positions: str = "all",
    label: str = "",
) -> Intervention:
    """Push the masked neurons towards ``lang``'s mean activation in ``stats`` (replace, add or diffmean).

    ``activate(mask, stats, "fr")`` or, without naming the language twice,
    ``activate(neuron_set, "fr", stats)`` (fr's neurons of the set, towards fr's means).
    """
    if isinstance(mask, NeuronSet):
        if not isinstance(stats, str) or not isinstance(lang, Stats):
            raise LangneuronsError('activate(neuron_set, "lang", stats[, mode, strength]): language, then statistics')
        ns, lang, stats = mask, stats, lang
        mask, site = ns.mask(lang), site or ns.site
    if not isinstance(stats, Stats) or not isinstance(lang, str):
        raise LangneuronsError('activate(mask, stats, "lang") or activate(neuron_set, "lang", stats)')
    if mode not in ACTIVATION_MODES:
        raise LangneuronsError(f"activation mode must be one of {', '.join(ACTIVATION_MODES)}, got {mode!r}")
    stats_site = stats.manifest.get("site")
    site = site or stats_site or "act"
    if stats_site is not None and stats_site != site:
        raise LangneuronsError(
            f"the mean activations were recorded at site {stats_site!r} but the intervention is at {site!r}"
            " (record statistics at that site)"
        )
    mask = mask.bool()
    if tuple(mask.shape) != (stats.num_layers, stats.intermediate_size):
        raise LangneuronsError(
            f"mask is {tuple(mask.shape)} but the statistics are {stats.num_layers} layers × "
            f"{stats.intermediate_size} neurons"
        )
    means = stats.mean()
    k = stats.language_index(lang)
    target = means[k]
    if mode == "diffmean":
        if len(stats.languages) < 2:
            raise LangneuronsError("diffmean needs statistics of at least two languages")
        others = torch.cat([means[:k], means[k + 1 :]]).mean(0)
        target = target - others
    keep = (
        torch.zeros(mask.shape, dtype=torch.float64)
        if mode == "replace"
        else torch.ones(mask.shape, dtype=torch.float64)
    )
    return Intervention(mask, keep, float(strength) * target, site, positions, label or f"{mode} {lang}")


def language_mask(neurons: NeuronSet, lang: str) -> torch.Tensor:
    """Bool [L, F] of ``lang``'s neurons (a one-line error if the set lacks the language)."""
    return neurons.mask(lang)


def check_neurons(loaded: LoadedModel, neurons: NeuronSet, site: str | None = None, any_site: bool = False) -> str:
    """The intervention site (``site``, else the set's, else ``act``), after refusing a set made for
    another model (shape or name) or found at another site (unless ``any_site``).

    Zeroing or scaling at ``act`` and at ``down_in`` are the same edit for gated MLPs
    (``down_in = act · up``), but activation values are not, so a site mismatch must be asked for.
    """
    site = site or neurons.site or "act"
    adapter = loaded.adapter
    if HEADS in (site, neurons.site):  # a head set (site "heads"): its units are attention heads
        if site != neurons.site:
            raise LangneuronsError("a head set is applied to attention heads only (and a neuron set never to heads)")
        adapter.check_heads()
        neurons.check_compatible(adapter.num_layers, adapter.num_heads, site, loaded.name)
        return site
    neurons.check_compatible(adapter.num_layers, adapter.intermediate_size, None if any_site else site, loaded.name)
    return site
