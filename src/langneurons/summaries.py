"""Summaries over languages, one definition each, shared by every command and the report.

- A **ratio** (PPL with a component off / PPL without) over other languages: the median of the ratios,
  with their geometric mean beside it. One large cell (×40 on one language) moves neither much, unlike
  the arithmetic mean, which the summaries never use.
- A **difference** (chrF drop in points) over other languages: the median, with the arithmetic mean beside
  it (a geometric mean is undefined for negative drops).
- **Selectivity**: the own-language ratio divided by the median ratio on the others.

Values that are None, NaN or infinite are left out and counted in ``excluded``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import TypedDict


class RatioSummary(TypedDict):
    median: float | None
    geomean: float | None
    n: int
    excluded: int


class DifferenceSummary(TypedDict):
    median: float | None
    mean: float | None
    n: int
    excluded: int


def finite(values: Iterable[float | None]) -> tuple[list[float], int]:
    """The finite values, and how many were None, NaN or infinite."""
    kept, dropped = [], 0
    for v in values:
        if v is None or not math.isfinite(v):
            dropped += 1
        else:
            kept.append(float(v))
    return kept, dropped


def median(values: Iterable[float | None]) -> float | None:
    """The true median of the finite values (mean of the two middle ones for an even count); None when
    none is finite."""
    kept, _ = finite(values)
    return float(statistics.median(kept)) if kept else None


def summarise_ratios(ratios: Iterable[float | None]) -> RatioSummary:
    """Median and geometric mean of positive ratios (a ratio ≤ 0 has no logarithm and is excluded)."""
    kept, dropped = finite(ratios)
    positive = [r for r in kept if r > 0]
    dropped += len(kept) - len(positive)
    return {
        "median": float(statistics.median(positive)) if positive else None,
        "geomean": math.exp(sum(math.log(r) for r in positive) / len(positive)) if positive else None,
        "n": len(positive),
        "excluded": dropped,
    }


def summarise_differences(values: Iterable[float | None]) -> DifferenceSummary:
    """Median and arithmetic mean of differences (e.g. chrF drops in points)."""
    kept, dropped = finite(values)
    return {
        "median": float(statistics.median(kept)) if kept else None,
        "mean": sum(kept) / len(kept) if kept else None,
        "n": len(kept),
        "excluded": dropped,
    }


def selectivity(own_ratio: float | None, other_ratios: Iterable[float | None]) -> float | None:
    """Own-language ratio / median ratio on the other languages; None when either is missing."""
    others = summarise_ratios(other_ratios)["median"]
    if own_ratio is None or others is None or not math.isfinite(own_ratio) or others == 0:
        return None
    return own_ratio / others
