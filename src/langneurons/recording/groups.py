"""Per-group sums of a block's rows (per expert, per language), one index_add: the MoE counts' building block."""

from __future__ import annotations

import torch


def group_sums(x: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """[n, w] sums of the rows of ``x`` [R, w] per group; rows with group ``n`` (uncounted) are dropped."""
    return torch.zeros(n + 1, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, groups, x)[:n]
