"""The precision of the recorded sums: float32 per batch, folded into float64 (recording/counter.py)."""

from __future__ import annotations

import torch

U32 = 2.0**-24  # float32's unit roundoff


def float32_bound(n: int) -> float:
    """γ_n = n·u / (1 − n·u), u = 2⁻²⁴: a float32 sum of n terms, added in any order, differs from the exact
    sum by at most γ_(n−1) · Σ|x| ≤ γ_n · Σ|x| (Higham, *Accuracy and Stability*, §4.2)."""
    return n * U32 / (1 - n * U32)


def accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half, bfloat16 and float32 activations; float64 stays float64."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
