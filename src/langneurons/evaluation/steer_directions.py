"""Steering with any intervention builder, and with residual directions (DiffMean, docs/methods.md §13).

:func:`run_steering` is `steer`'s loop for interventions built elsewhere: a baseline, then for each
target and condition key the steered generations and the control's, judged by the same fluency-gated
rule (`evaluate.steer.judge`). :func:`steer_directions` builds "add α · r_l · d/‖d‖ at layer l" with a
random direction of the same norm as the control; its file has `steer`'s format, the key of a condition
being ``"<α> @ layer <l>"``. :func:`steer_directions_clas` runs CLaS-Bench's recipe instead (``--recipe
clas``): ``β · unit(μ_t − μ_s)`` added after every layer of a contiguous range, β absolute, keys
``"β=<β> @ layers <first>–<last>"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langneurons.errors import LangneuronsError
from langneurons.evaluation.steer import (
    SteerSettings,
    assess,
    generate,
    generate_packed,
    judge,
    median,
    public_generations,
    steer_result,
    success_rule,
)
from langneurons.formats.directions import DirectionSet
from langneurons.intervention import add_direction, add_pair_direction, random_direction_control
from langneurons.intervention.controls import derive_seed
from langneurons.models.loading import LoadedModel
from langneurons.progress import progress_bar

# (target, condition key, control?) -> interventions
Builder = Callable[[str, str, bool], list]

# α of α·r_l·d/‖d‖: r_l includes massive shared activations, so useful α are small (0.5 and 1 broke the
# embedded Gemma's fluency at every layer, docs/evaluation.md)
DIRECTION_STRENGTHS = (0.05, 0.1, 0.25)


# β of CLaS-Bench's β·unit(μ_t − μ_s), added at every layer of a range. Absolute, so it must match the
# model's scale: on the embedded Gemma-3 ‖μ_t − μ_s‖ runs from ~30 (layer 0) to ~8·10³ (layer 17) and r_l
# from ~180 to ~3·10⁴. At every layer β = 8 changed nothing, 16 gave fluent fr/ru/zh, 32 half-broke and
# 64 broke fluency; over the middle half 32–64 were needed (docs/evaluation.md). CLaS-Bench's own
# scripts sweep 1, 2.5, 5, 10 on 8B models.
CLAS_STRENGTHS = (8.0, 16.0, 32.0, 64.0)
RECIPES = ("ours", "clas")


def default_ranges(num_layers: int) -> list[tuple[int, int]]:
    """The layer ranges [first, last] (inclusive) a CLaS sweep tries by default: every layer (CLaS-Bench's
    default) and the middle half."""
    last = num_layers - 1
    ranges = [(0, last), (num_layers // 4, max(num_layers // 4, (3 * num_layers) // 4 - 1))]
    return list(dict.fromkeys(ranges))


def clas_key(strength: float, first: int, last: int) -> str:
    """The condition key of one CLaS cell, e.g. ``"β=16 @ layers 0–17"``."""
    return f"β={strength:g} @ layers {first}–{last}"


def default_layers(num_layers: int) -> list[int]:
    """The layers a direction sweep tries by default: 1/4, 1/2 and 3/4 of the depth."""
    return sorted({num_layers // 4, num_layers // 2, (3 * num_layers) // 4})


def run_steering(
    loaded: LoadedModel,
    prompts: list[str],
    targets: list[str],
    keys: list[str],
    build: Builder,
    s: SteerSettings,
    *,
    baseline: list[dict[str, Any]] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(results[target] = {"baseline", "strengths": {key: {"steered", "random"}}}, baseline generations)."""
    if not prompts:
        raise LangneuronsError("no prompts")
    runs = [(t, k, c) for t in targets for k in keys for c in ((False, True) if s.controls else (False,))]
    bar = progress_bar(progress, "prompts")
    with bar:
        task = bar.add_task("baseline", total=len(prompts) * (len(runs) + (baseline is None)))
        if baseline is None:
            baseline = assess(loaded, generate(loaded, prompts, [], s, route=False, key="baseline"))
            bar.advance(task, len(prompts))
        bar.update(task, description=f"{len(runs)} steering conditions, packed")
        names = [f"{t}/{k}/{'random' if c else 'steered'}" for t, k, c in runs]  # sampling seeds by name
        packed = generate_packed(loaded, [(prompts, build(*run)) for run in runs], s,
                                 on_batch=lambda n: bar.advance(task, n), keys=names)  # fmt: skip
    assess(loaded, [g for gens in packed for g in gens])
    base_median = median([g["ppl"] for g in baseline if g["ppl"] is not None])
    results: dict[str, Any] = {}
    for (target, key, ctrl), gens in zip(runs, packed, strict=True):
        entry = results.setdefault(target, {"baseline": judge(baseline, target, base_median, s), "strengths": {}})
        entry["strengths"].setdefault(key, {})["random" if ctrl else "steered"] = {
            **judge(gens, target, base_median, s),
            "generations": public_generations(gens),
        }
    return results, baseline


def direction_key(alpha: float, layer: int) -> str:
    return f"{alpha:g} @ layer {layer}"


def direction_builder(ds: DirectionSet, s: SteerSettings, grid: dict[str, tuple[float, int]]) -> Builder:
    """Interventions for a key of ``grid`` (key → (α, layer)); the control is a seeded random direction."""

    def build(target: str, key: str, control: bool) -> list:
        alpha, layer = grid[key]
        iv = add_direction(ds, target, [layer], alpha, positions=s.positions)
        if control:
            iv = random_direction_control(iv, derive_seed(s.seed, ds.index(target) * 1_009 + layer))
        return [iv]

    return build


def clas_builder(
    ds: DirectionSet, source: str, s: SteerSettings, grid: dict[str, tuple[float, tuple[int, int]]]
) -> Builder:
    """CLaS-Bench interventions for a key of ``grid`` (key → (β, (first, last))): ``β · unit(μ_t − μ_s)``
    after every layer first..last; the control is a seeded random direction of norm β in each of them."""
    ds.index(source)

    def build(target: str, key: str, control: bool) -> list:
        strength, (first, last) = grid[key]
        iv = add_pair_direction(ds, source, target, list(range(first, last + 1)), strength, positions=s.positions)
        if control:
            index = ds.index(target) * 1_009 + first * 101 + last + 500_000  # apart from direction_builder's
            iv = random_direction_control(iv, derive_seed(s.seed, index))
        return [iv]

    return build


def check_ranges(ds: DirectionSet, ranges: list[tuple[int, int]]) -> None:
    """Each range [first, last] lies within the set's layers and has first ≤ last (one-line errors)."""
    if not ranges:
        raise LangneuronsError("no layer ranges")
    for first, last in ranges:
        ds.check_layer(first)
        ds.check_layer(last)
        if first > last:
            raise LangneuronsError(f"layer range {first}-{last} is empty (first > last)")


def steer_directions(
    loaded: LoadedModel,
    ds: DirectionSet,
    prompts: list[str],
    source: str | None,
    targets: list[str],
    layers: list[int],
    settings: SteerSettings | None = None,
    *,
    directions_path: str | None = None,
    prompts_spec: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Baseline, steered and random-direction generations for each target, layer and strength α."""
    s = settings or SteerSettings()
    ds.check_compatible(loaded.adapter.num_layers, loaded.adapter.hidden_size, loaded.name)
    for lang in targets:
        ds.index(lang)
    for layer in layers:
        ds.check_layer(layer)
    started = time.time()
    grid = {direction_key(a, layer): (a, layer) for layer in layers for a in s.strengths}
    results, base = run_steering(loaded, prompts, targets, list(grid), direction_builder(ds, s, grid), s,
                                 progress=progress)  # fmt: skip
    return steer_result(
        loaded, source, targets, results, base, s, prompts, prompts_spec, started,
        site="residual",
        directions={"path": directions_path, "method": ds.method, "model": ds.model, "source": ds.source},
        layers=layers,
        recipe="ours",
        edit="h_l ← h_l + α · r_l · d/‖d‖ after decoder layer l (the source's direction is not removed)",
        controls="random = a seeded random direction with the same norm, at the same layer",
        success_rule=success_rule(s, median([g["ppl"] for g in base if g["ppl"] is not None])),
    )  # fmt: skip


def steer_directions_clas(
    loaded: LoadedModel,
    ds: DirectionSet,
    prompts: list[str],
    source: str,
    targets: list[str],
    ranges: list[tuple[int, int]],
    settings: SteerSettings | None = None,
    *,
    directions_path: str | None = None,
    prompts_spec: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """CLaS-Bench's recipe: baseline, steered and random-direction generations for each target, layer range
    and absolute strength β (``settings.strengths``); ``β · unit(μ_t − μ_s)`` after every layer of a range."""
    s = settings or SteerSettings()
    ds.check_compatible(loaded.adapter.num_layers, loaded.adapter.hidden_size, loaded.name)
    ds.index(source)
    for lang in targets:
        ds.index(lang)
        if lang == source:
            raise LangneuronsError(f"target {lang!r} is the source language: target − source is zero")
    check_ranges(ds, ranges)
    started = time.time()
    grid = {clas_key(b, first, last): (b, (first, last)) for first, last in ranges for b in s.strengths}
    results, base = run_steering(loaded, prompts, targets, list(grid), clas_builder(ds, source, s, grid), s,
                                 progress=progress)  # fmt: skip
    return steer_result(
        loaded, source, targets, results, base, s, prompts, prompts_spec, started,
        site="residual",
        directions={"path": directions_path, "method": ds.method, "model": ds.model, "source": ds.source},
        recipe="clas",
        layer_ranges=[[first, last] for first, last in ranges],
        edit="h_l ← h_l + β · (μ_t − μ_s)/‖μ_t − μ_s‖ after every decoder layer l of [first, last] (CLaS-Bench: "
             "target − source direction, absolute β, no residual-norm factor; from the set, d_t − d_s ∝ μ_t − μ_s)",
        controls="random = a seeded random direction of norm β at each layer of the range",
        success_rule=success_rule(s, median([g["ppl"] for g in base if g["ppl"] is not None])),
    )  # fmt: skip
