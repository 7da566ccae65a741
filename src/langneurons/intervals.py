"""Confidence intervals, and the one way a perplexity ratio is written, shared by the evaluation, the command line
and the report (one definition each)."""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a rate ``successes / n`` (stays inside [0, 1], also at 0 % or 100 %);
    None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_text(r: float) -> str:
    """One format for every perplexity ratio: × and three significant digits (×0.98, ×2.01, ×62.3, ×381)."""
    if not math.isfinite(r):
        return "–"
    return f"×{r:,.0f}" if r >= 1000 else f"×{r:.3g}"
