"""Significance of an effect against matched random controls (docs/methods.md §15).

- empirical p-value ``(1 + #{controls with effect ≥ real}) / (1 + R)``: exact under the null that the
  real set is one more draw of the controls (P(p ≤ α) ≤ α), never 0;
- z-score against the controls' mean and standard deviation (ddof = 1);
- Wilson score interval for a rate (steering success);
- percentile bootstrap interval over sentences for a ratio of sums (ΔPPL).

NaN is never significant (docs/evaluation.md, "Many controls and p-values"): a real effect that is
NaN or ±inf (a half-precision model that overflowed) has no p-value (None, with a ``reason``), and
controls that are NaN or ±inf are counted (``controls_not_finite``) and left out, so p and z are
taken over the finite controls only and R is reduced accordingly; each such case adds a line to the
result's ``warnings``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from langneurons.intervals import Z95, wilson


def finite(values: Sequence[float]) -> list[float]:
    """The values that are neither NaN nor ±inf."""
    return [float(v) for v in values if math.isfinite(v)]


def empirical_p(real: float, controls: Sequence[float]) -> float | None:
    """One-sided p-value of ``real`` being as large as it is among ``controls``: None without finite
    controls or when ``real`` is NaN/±inf; controls that are NaN/±inf are left out (R reduced)."""
    controls = finite(controls)
    if not controls or not math.isfinite(real):
        return None
    return (1 + sum(c >= real for c in controls)) / (1 + len(controls))


def z_score(real: float, controls: Sequence[float]) -> float | None:
    """``(real − mean) / sd`` of the finite controls (sd with ddof = 1); None for fewer than 2 finite
    controls, sd = 0, or ``real`` NaN/±inf."""
    controls = finite(controls)
    if len(controls) < 2 or not math.isfinite(real):
        return None
    mean = sum(controls) / len(controls)
    sd = math.sqrt(sum((c - mean) ** 2 for c in controls) / (len(controls) - 1))
    return None if sd == 0 else (real - mean) / sd


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
    ``transform`` = exp(x) − 1. Vectorised: one [B, n] weight matrix of multinomial counts. None when
    there are no items or any of them is NaN/±inf (the interval would be NaN, not an interval).
    """
    n = int(numer.numel())
    if n == 0 or not bool(torch.isfinite(numer).all() and torch.isfinite(denom).all()):
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


def summarise_effect(real: float, controls: Sequence[float]) -> dict[str, Any]:
    """p, z and the controls' mean / sd / max for one effect against its R controls.

    ``controls`` is the number of finite controls the statistics are taken over; ``controls_not_finite``
    the number left out as NaN/±inf. A real effect that is NaN/±inf gets ``real`` None, p and z None and
    a ``reason``; every such case is also a line in ``warnings`` (empty when all is finite).
    """
    real = float(real)
    kept = finite(controls)
    dropped = len(controls) - len(kept)
    r = len(kept)
    mean = sum(kept) / r if r else None
    sd = math.sqrt(sum((c - mean) ** 2 for c in kept) / (r - 1)) if r >= 2 and mean is not None else None
    warnings: list[str] = []
    reason = None
    if not math.isfinite(real):
        reason = f"the effect is NaN/inf ({real}): not computable, e.g. the model overflowed under the intervention"
        warnings.append(f"{reason}; no p-value")
    elif r == 0 and dropped:
        reason = f"all {dropped} controls are NaN/inf: not computable"
    if dropped:
        warnings.append(
            f"{dropped} of {len(controls)} controls are NaN/inf and left out: p and z over the {r} finite ones"
        )
    return {
        "real": real if math.isfinite(real) else None,
        "controls": r,
        "controls_not_finite": dropped,
        "p": empirical_p(real, kept),
        "z": z_score(real, kept),
        "control_mean": mean,
        "control_sd": sd,
        "control_max": max(kept) if r else None,
        **({"reason": reason} if reason is not None else {}),
        "warnings": warnings,
    }


__all__ = ["Z95", "bootstrap_ratio_ci", "empirical_p", "finite", "summarise_effect", "wilson", "z_score"]
