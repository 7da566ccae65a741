"""Sums of the residual stream after every decoder layer over counted tokens (DiffMean, METHODS.md §11).

Rides along with a :class:`~langneurons.record.counter.Counter` in the same forward: it reads the
counter's mask of counted rows, so exactly the tokens that are counted for the neurons are summed.
Per layer it keeps ``[Σ h (H values), Σ ‖h‖]`` in float64 on that layer's device.
"""

from __future__ import annotations

import torch

from langneurons.models import Adapter
from langneurons.record.counter import Counter


class ResidualCounter:
    """While active, adds each forward's counted residual vectors (and their norms) per layer."""

    def __init__(self, adapter: Adapter, counter: Counter):
        self.adapter, self.counter = adapter, counter
        self.layers: dict[int, torch.Tensor] = {}  # layer -> float64 [H + 1] on its device
        self.handles = []

    def __enter__(self) -> ResidualCounter:
        self.handles = self.adapter.hook_residual(self._observe)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def reset(self) -> None:
        self.layers = {}

    def partial(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """This unit's sums as float64 [L, H + 1] (last column: Σ‖h‖) on ``device``."""
        out = torch.zeros(self.adapter.num_layers, self.adapter.hidden_size + 1, dtype=torch.float64, device=device)
        for layer, acc in self.layers.items():
            out[layer] = acc.to(device)
        return out

    def _observe(self, layer: int, hidden: torch.Tensor) -> None:
        x = hidden.reshape(-1, hidden.shape[-1])
        rows = self.counter._mask(x.device)
        if rows is not None and rows.dtype == torch.bool:  # the compiled counter passes a row mask
            x64 = torch.where(rows.unsqueeze(1), x, 0).to(torch.float64)
        else:
            x64 = (x if rows is None else x.index_select(0, rows)).to(torch.float64)
        ones = x64.new_ones(1, x64.shape[0])
        update = torch.cat([(ones @ x64)[0], torch.linalg.vector_norm(x64, dim=1).sum().reshape(1)])
        acc = self.layers.get(layer)
        self.layers[layer] = update if acc is None else acc + update
        return None


def split_residual(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, L, H + 1] accumulators → (resid_sum [K, L, H], resid_norm_sum [K, L])."""
    return rows[..., :-1].contiguous(), rows[..., -1].contiguous()
