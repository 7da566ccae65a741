"""Intervals and paired tests between methods by one bootstrap over the items they share (docs/evaluation.md,
"Paired tests").

A *measure* is a statistic that every method computes from the same items — sentences per language, lines
per translation pair, prompts per steering target — given as strata (the items of each stratum are resampled
within it, with replacement). Every resample draws one set of indices and all methods are evaluated on it,
so differences between methods are paired: what is common to the items (an easy prompt, a long sentence)
cancels out. Per method: the statistic on all items and its 95 % percentile interval; per pair of methods:
the difference, its 95 % percentile interval, a two-sided bootstrap p (twice the smaller share of resampled
differences on either side of 0, at most 1) and ``significant`` (the interval excludes 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

# a method's statistic of one resample: index arrays, one per stratum → value (None: not defined)
Statistic = Callable[[Sequence[np.ndarray]], float | None]


@dataclass
class Measure:
    """One statistic of several methods over shared strata of items."""

    name: str
    strata: list[int]  # number of items in each stratum
    statistics: dict[str, Statistic]  # method -> statistic
    higher_is_better: bool = True


def _percentiles(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if finite.size < max(10, values.size // 2):  # mostly undefined: no interval
        return None
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]


def _value(stat: Statistic, idx: Sequence[np.ndarray]) -> float:
    v = stat(idx)
    return float("nan") if v is None else float(v)


def paired_bootstrap(measure: Measure, resamples: int, seed: int) -> dict[str, Any]:
    """Per method ``{value, ci}``, per pair ``"A vs B"`` ``{difference, ci, p, significant}``, the best method
    (``higher_is_better``) and the methods not significantly different from it (``tied_with_best``)."""
    rng = np.random.default_rng(seed)
    full = [np.arange(n) for n in measure.strata]
    draws = [[rng.integers(0, n, size=n) for n in measure.strata] for _ in range(resamples)]
    point = {m: _value(f, full) for m, f in measure.statistics.items()}
    boot = {m: np.array([_value(f, d) for d in draws]) for m, f in measure.statistics.items()}
    methods = {m: {"value": None if np.isnan(point[m]) else point[m], "ci": _percentiles(boot[m])}
               for m in measure.statistics}  # fmt: skip
    pairs: dict[str, Any] = {}
    for a, b in combinations(measure.statistics, 2):
        if np.isnan(point[a]) or np.isnan(point[b]):
            continue
        diff = boot[a] - boot[b]
        diff = diff[np.isfinite(diff)]
        ci = _percentiles(diff)
        p = None if diff.size == 0 else float(min(1.0, 2 * min(np.mean(diff <= 0), np.mean(diff >= 0))))
        pairs[f"{a} vs {b}"] = {"difference": point[a] - point[b], "ci": ci, "p": p,
                                "significant": ci is not None and (ci[0] > 0 or ci[1] < 0)}  # fmt: skip
    defined = [m for m in measure.statistics if not np.isnan(point[m])]
    best = None
    if defined:
        best = (max if measure.higher_is_better else min)(defined, key=lambda m: point[m])
    tied = [m for m in defined if m != best and not _significant(pairs, best, m)]
    return {"methods": methods, "pairs": pairs, "best": best, "tied_with_best": tied,
            "higher_is_better": measure.higher_is_better, "resamples": resamples, "seed": seed,
            "strata": measure.strata}  # fmt: skip


def _significant(pairs: dict[str, Any], a: str | None, b: str) -> bool:
    row = pairs.get(f"{a} vs {b}") or pairs.get(f"{b} vs {a}")
    return bool(row and row["significant"])


__all__ = ["Measure", "Statistic", "paired_bootstrap"]
