"""Interventions on the residual stream (docs/methods.md §13): add a direction, or project it out.

At the output of decoder block l (the residual stream h_l):
  add     h ← h + v_l              (steering: v_l = α · r_l · d/‖d‖, so α is comparable across layers;
                                   or CLaS-Bench's v_l = β · unit(μ_t − μ_s), :func:`add_pair_direction`)
  ablate  h ← h − ((h − c_l)·u_l) u_l   (directional ablation: u_l = d/‖d‖; DiffMean's "deactivation")

The ablation projects about c_l, the languages' mean residual at layer l (the direction set's
``mean``), not about 0: it removes the variation along u_l and keeps the shared offset. Models with
massive activations (Gemma-3's residual norm reaches 3·10⁴) need this: projecting out even a random
unit direction about 0 multiplied the embedded Gemma's perplexity by ~10¹¹ (docs/evaluation.md).
It also leaves the BOS token alone: u_l and c_l are estimated on counted tokens, which never include
BOS, and BOS is an attention-sink outlier (residual norm ~100× the others') where the projection would
be extrapolation — with BOS edited, a random direction alone multiplied perplexity by ~10³–10⁴.
Both edits take the same positions as neuron interventions. The control is a seeded random direction
with the same norm in the same layer(s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from langneurons.errors import LangneuronsError
from langneurons.formats.directions import DirectionSet

DIRECTION_MODES = ("add", "ablate")


@dataclass(frozen=True)
class DirectionIntervention:
    """Add ``vectors[l]`` to, or project unit ``vectors[l]`` out of, the residual stream after layer l."""

    vectors: dict[int, torch.Tensor]  # layer -> float [H]
    mode: str = "add"
    positions: str = "all"
    label: str = ""
    centers: dict[int, torch.Tensor] | None = None  # ablate: project about these points (None: about 0)
    rows: tuple[int, int] | None = None  # batch rows [start, stop) it applies to (None: every row)

    def __post_init__(self) -> None:
        from langneurons.intervention.spec import POSITIONS, check_rows

        check_rows(self.rows)
        if self.mode not in DIRECTION_MODES:
            raise LangneuronsError(f"unknown direction mode {self.mode!r}; choose {' or '.join(DIRECTION_MODES)}")
        if self.positions not in POSITIONS:
            raise LangneuronsError(f"unknown positions {self.positions!r}; choose one of {', '.join(POSITIONS)}")
        if not self.vectors:
            raise LangneuronsError("a direction intervention needs at least one layer")

    @property
    def n_units(self) -> int:
        """Size of the component: one direction per layer edited."""
        return len(self.vectors)

    def __repr__(self) -> str:
        layers = ",".join(map(str, sorted(self.vectors)))
        label = f"{self.label}: " if self.label else ""
        return f"DirectionIntervention({label}{self.mode} at layers {layers}, positions {self.positions})"


def _layers(ds: DirectionSet, layers: list[int] | None) -> list[int]:
    chosen = list(range(ds.num_layers)) if layers is None else list(layers)
    for layer in chosen:
        ds.check_layer(layer)
    return chosen


def add_direction(
    ds: DirectionSet, lang: str, layers: list[int], alpha: float, *, positions: str = "all", label: str = ""
) -> DirectionIntervention:
    """Steer towards ``lang``: add ``α · r_l · d/‖d‖`` after each of ``layers``."""
    vectors = {
        layer: float(alpha) * float(ds.resid_norm[layer]) * ds.unit(lang, layer) for layer in _layers(ds, layers)
    }
    return DirectionIntervention(vectors, "add", positions, label or f"add {lang} α={alpha:g}")


def add_pair_direction(
    ds: DirectionSet,
    source: str,
    target: str,
    layers: list[int] | None,
    strength: float,
    *,
    positions: str = "all",
    label: str = "",
) -> DirectionIntervention:
    """CLaS-Bench's DiffMean steering (Gurgurov et al. 2026; docs/methods.md §13): add
    ``β · unit(μ[t,l] − μ[s,l])`` after each of ``layers`` (default: every layer), β an ABSOLUTE strength
    (no residual-norm factor), the direction target − source rather than target − mean of the others.

    The direction set already determines it, so nothing new is recorded: with
    ``d[k] = μ[k] − mean_{j≠k} μ[j]`` over K languages, ``d[k] = (K·μ[k] − Σ_j μ[j]) / (K − 1)``, hence
    ``d[t] − d[s] = (μ[t] − μ[s]) · K/(K − 1)`` and ``unit(d[t] − d[s]) = unit(μ[t] − μ[s])``.
    """
    if source == target:
        raise LangneuronsError(f"the source and target language are both {source!r}: target − source is zero")
    vectors = {}
    for layer in _layers(ds, layers):
        diff = ds.direction(target, layer).double() - ds.direction(source, layer).double()
        norm = float(torch.linalg.vector_norm(diff))
        if norm == 0.0:
            raise LangneuronsError(f"the {target} − {source} direction at layer {layer} is zero")
        vectors[layer] = (float(strength) * diff / norm).float()
    return DirectionIntervention(vectors, "add", positions, label or f"add {source}→{target} β={strength:g}")


def ablate_direction(
    ds: DirectionSet,
    lang: str,
    layers: list[int] | None = None,
    *,
    positions: str = "all",
    label: str = "",
    centered: bool = True,
) -> DirectionIntervention:
    """Switch ``lang``'s direction off: project d/‖d‖ out after each of ``layers`` (default: all), about
    the languages' mean residual (``centered``, when the set has it) or about 0."""
    chosen = _layers(ds, layers)
    vectors = {layer: ds.unit(lang, layer) for layer in chosen}
    centers = {layer: ds.mean[layer] for layer in chosen} if centered and ds.mean is not None else None
    return DirectionIntervention(vectors, "ablate", positions, label or f"ablate {lang}", centers)


def random_direction_control(iv: DirectionIntervention, seed: int = 0) -> DirectionIntervention:
    """The same edit with a seeded random direction of the same norm in every layer (the control)."""
    gen = torch.Generator().manual_seed(int(seed))
    vectors = {}
    for layer in sorted(iv.vectors):
        v = iv.vectors[layer].double()
        r = torch.randn(v.shape, generator=gen, dtype=torch.float64)
        vectors[layer] = (r * (torch.linalg.vector_norm(v) / torch.linalg.vector_norm(r))).float()
    return replace(iv, vectors=vectors, label=f"random ({iv.label})")


def apply_direction(iv: DirectionIntervention, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """The edited residual stream of one layer (a new tensor)."""
    v = iv.vectors[layer].to(device=hidden.device, dtype=hidden.dtype)
    if iv.mode == "add":
        return hidden + v
    if iv.centers is None:
        return hidden - (hidden @ v).unsqueeze(-1) * v
    c = iv.centers[layer].to(device=hidden.device, dtype=hidden.dtype)
    return hidden - ((hidden - c) @ v).unsqueeze(-1) * v
