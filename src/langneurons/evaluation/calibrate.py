"""Calibrated steering (docs/evaluation.md, "Calibrated steering"): each target's setting chosen on dev prompts.

The prompts are split (`data.prompts.split_prompts`): ``dev_prompts`` evenly spaced ones are the **dev** split,
the rest the **test** split. On the
dev split every (mode, strength) of a grid is run for every target (packed, no controls: `steer` with
per-target conditions); per target the setting with the highest fluency-gated success is chosen (ties: the
higher fluent rate, then the weaker strength, then the earlier in the grid). The test split is then run at each
target's own chosen setting with the matched random control, exactly like `steer`, and the result file keeps
`steer`'s format plus a ``calibration`` block: the split, the grid, the dev curve per target (success,
fluent rate, language rate at every setting: the success–fluency trade-off), the choice and the rule.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langneurons.data.prompts import split_prompts
from langneurons.errors import LangneuronsError

if TYPE_CHECKING:  # torch-free at import: the CLI checks the grid and the split before torch loads
    from langneurons.evaluation.steer import SteerSettings
    from langneurons.formats.neuronset import NeuronSet
    from langneurons.formats.stats import Stats
    from langneurons.models.loading import LoadedModel
    from langneurons.recording.distributed import World

# replace: the target's neurons set to s × their mean (1 = Tang et al.'s replacement); add: s × the mean added.
# On the embedded Gemma add 4 reached at most 10 % success on any target (loops, byte salad) and add 0.75 was
# zh's best setting (README, "Calibrated steering"): the add strengths sit at and below 1.
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {"replace": (0.5, 1.0, 1.5, 2.0), "add": (0.5, 0.75, 1.0, 2.0)}
DEFAULT_GRID: tuple[tuple[str, float], ...] = tuple((m, st) for m, sts in DEFAULT_STRENGTHS.items() for st in sts)
DEFAULT_DEV_PROMPTS = 10
CALIBRATION_RULE = (
    "per target, the setting with the highest fluency-gated success on the dev prompts; ties: the higher fluent "
    "rate, then the weaker strength, then the earlier setting in the grid"
)


def calibration_grid(mode: str | None = None, strengths: list[float] | None = None) -> list[tuple[str, float]]:
    """The (mode, strength) grid: the default (replace × 0.5, 1, 1.5, 2 and add × 0.5, 0.75, 1, 2); ``mode`` alone:
    that mode's default strengths; ``strengths`` alone: replace × those; both: ``mode`` × ``strengths``."""
    if mode is None and strengths is None:
        return list(DEFAULT_GRID)
    mode = mode or "replace"
    if strengths is None:
        if mode not in DEFAULT_STRENGTHS:
            raise LangneuronsError(f"--calibrate --mode {mode} has no default strengths: give them with --strength")
        strengths = list(DEFAULT_STRENGTHS[mode])
    if not strengths:
        raise LangneuronsError("the calibration grid is empty")
    return [(mode, float(st)) for st in strengths]


def choose(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The point of one target's dev curve the rule picks (`CALIBRATION_RULE`); the curve is in grid order."""
    if not curve:
        raise LangneuronsError("the calibration grid is empty")
    order = sorted(range(len(curve)), key=lambda i: (-curve[i]["success"], -curve[i]["fluent_rate"],
                                                     curve[i]["strength"], i))  # fmt: skip
    return curve[order[0]]


def dev_curve(result: dict[str, Any], grid: list[tuple[str, float]]) -> dict[str, list[dict[str, Any]]]:
    """Per target, one point per grid setting: mode, strength, success, fluent_rate, language_rate, n."""
    from langneurons.evaluation.steer import setting_key

    curve: dict[str, list[dict[str, Any]]] = {}
    for target, entry in result["results"].items():
        points = []
        for mode, strength in grid:
            steered = entry["strengths"][setting_key(mode, strength)]["steered"]
            points.append({"mode": mode, "strength": strength, "success": steered["success"],
                           "fluent_rate": steered["fluent_rate"], "language_rate": steered["language_rate"],
                           "n": steered["n"]})  # fmt: skip
        curve[target] = points
    return curve


def calibrate(
    loaded: LoadedModel,
    neurons: NeuronSet,
    stats: Stats | None,
    dev_prompts: list[str],
    source: str | None,
    targets: list[str],
    settings: SteerSettings | None = None,
    grid: list[tuple[str, float]] | None = None,
    *,
    progress: bool = True,
    world: World | None = None,
) -> dict[str, Any] | None:
    """Run every grid setting for every target on ``dev_prompts`` (packed, no controls) and choose per target.

    Returns ``{"grid", "curve", "chosen", "rule", "dev_baseline", "wall_seconds"}`` (rank 0; None on the other
    torchrun ranks, whose passes are shared out as in `steer`).
    """
    from langneurons.evaluation.steer import SteerSettings, steer

    s = replace(settings or SteerSettings(), controls=0)
    grid = list(grid or DEFAULT_GRID)
    started = time.time()
    result = steer(loaded, neurons, stats, dev_prompts, source, targets, s, progress=progress, world=world,
                   conditions={t: grid for t in targets})  # fmt: skip
    if result is None:
        return None
    curve = dev_curve(result, grid)
    chosen = {t: {k: choose(points)[k] for k in ("mode", "strength", "success", "fluent_rate")}
              for t, points in curve.items()}  # fmt: skip
    return {
        "grid": [{"mode": m, "strength": st} for m, st in grid],
        "curve": curve,
        "chosen": chosen,
        "rule": CALIBRATION_RULE,
        "dev_baseline": {t: result["results"][t]["baseline"]["success"] for t in targets},
        "dev_success_rule": result["provenance"]["success_rule"],
        "wall_seconds": round(time.time() - started, 3),
    }


def steer_calibrated(
    loaded: LoadedModel,
    neurons: NeuronSet,
    stats: Stats | None,
    prompts: list[str],
    source: str | None,
    targets: list[str],
    settings: SteerSettings | None = None,
    *,
    dev_prompts: int = DEFAULT_DEV_PROMPTS,
    grid: list[tuple[str, float]] | None = None,
    neurons_path: str | None = None,
    stats_path: str | None = None,
    prompts_spec: str | None = None,
    progress: bool = True,
    world: World | None = None,
) -> dict[str, Any] | None:
    """`steer` with each target's (mode, strength) chosen on the first ``dev_prompts`` prompts (`calibrate`), then
    measured with its matched random control on the rest. The file is `steer`'s, results keyed
    ``"<mode> <strength>"``, plus a ``calibration`` block. Rank 0 returns it; the other torchrun ranks None."""
    from langneurons.evaluation.steer import SteerSettings, steer
    from langneurons.recording.distributed import World, broadcast_object

    s = settings or SteerSettings()
    dev, test = split_prompts(prompts, dev_prompts)
    grid = list(grid or DEFAULT_GRID)
    started = time.time()
    world = world or World()
    cal = calibrate(loaded, neurons, stats, dev, source, targets, s, grid, progress=progress, world=world)
    chosen = broadcast_object(None if cal is None else cal["chosen"], world)
    conditions = {t: [(chosen[t]["mode"], chosen[t]["strength"])] for t in targets}
    result = steer(loaded, neurons, stats, test, source, targets, s, neurons_path=neurons_path, stats_path=stats_path,
                   prompts_spec=prompts_spec, progress=progress, world=world, conditions=conditions)  # fmt: skip
    if result is None or cal is None:
        return None
    result["calibration"] = {"dev_prompts": dev, "test_prompts": test, **cal}
    # one mode and strength list no longer describe the run: each target's is in calibration.chosen
    result["provenance"]["settings"].update(mode="calibrated", strengths=sorted({st for _, st in grid}))
    result["provenance"]["wall_seconds"] = round(time.time() - started, 3)
    return result


__all__ = [
    "CALIBRATION_RULE",
    "DEFAULT_DEV_PROMPTS",
    "DEFAULT_GRID",
    "DEFAULT_STRENGTHS",
    "calibrate",
    "calibration_grid",
    "choose",
    "dev_curve",
    "steer_calibrated",
]
