"""Significance of an effect against matched random controls (docs/methods.md §15).

- empirical p-value ``(1 + #{controls with effect ≥ real}) / (1 + R)``: exact under the null that the
  real set is one more draw of the controls (P(p ≤ α) ≤ α), never 0;
- z-score against the controls' mean and standard deviation (ddof = 1);
- Wilson score interval for a rate (steering success);
- percentile bootstrap interval over sentences for a ratio of sums (ΔPPL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def empirical_p(real: float, controls: Sequence[float]) -> float | None:
    """One-sided p-value of ``real`` being as large as it is among ``controls`` (None without controls)."""
    if not controls:
        return None
    return (1 + sum(c >= real for c in controls)) / (1 + len(controls))


def z_score(real: float, controls: Sequence[float]) -> float | None:
    """``(real − mean) / sd`` of the controls (sd with ddof = 1); None for fewer than 2 controls or sd = 0."""
    if len(controls) < 2:
        return None
    mean = sum(controls) / len(controls)
    sd = math.sqrt(sum((c - mean) ** 2 for c in controls) / (len(controls) - 1))
    return None if sd == 0 else (real - mean) / sd


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a rate ``successes / n`` (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ratio_ci(
    numer: torch.Tensor,
    denom: torch.Tensor,
    *,
    transform=None,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile interval of ``transform(Σ numer / Σ denom)`` over items resampled with replacement.

    For ΔPPL: ``numer`` = per-sentence NLL(intervened) − NLL(base), ``denom`` = predicted tokens,
    ``transform`` = exp(x) − 1. Vectorised: one [B, n] weight matrix of multinomial counts.
    """
    n = int(numer.numel())
    if n == 0:
        return None
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(n, (resamples, n), generator=gen)
    ones = torch.ones(resamples, n, dtype=torch.float64)
    weights = torch.zeros(resamples, n, dtype=torch.float64).scatter_add_(1, draws, ones)
    stat = (weights @ numer.to(torch.float64)) / (weights @ denom.to(torch.float64)).clamp_min(1e-300)
    if transform is not None:
        stat = transform(stat)
    alpha = (1 - level) / 2
    q = torch.quantile(stat, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return float(q[0]), float(q[1])


def summarise_effect(real: float, controls: Sequence[float]) -> dict[str, float | int | None]:
    """p, z and the controls' mean / sd / max for one effect against its R controls."""
    r = len(controls)
    mean = sum(controls) / r if r else None
    sd = math.sqrt(sum((c - mean) ** 2 for c in controls) / (r - 1)) if r >= 2 and mean is not None else None
    return {
        "real": real,
        "controls": r,
        "p": empirical_p(real, controls),
        "z": z_score(real, controls),
        "control_mean": mean,
        "control_sd": sd,
        "control_max": max(controls) if r else None,
    }


__all__ = ["Z95", "bootstrap_ratio_ci", "empirical_p", "summarise_effect", "wilson", "z_score"]
