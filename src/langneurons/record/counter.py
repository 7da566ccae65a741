"""Hooks that add one batch's counted activations into per-layer accumulators (on the model's device)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from langneurons.models import Adapter


@dataclass
class Partial:
    """Statistics of one unit of work, for one language: [L, F] tensors and a token count."""

    count: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    n_tokens: torch.Tensor

    @classmethod
    def zeros(cls, num_layers: int, width: int, device: torch.device | str = "cpu") -> Partial:
        shape = (num_layers, width)
        return cls(
            torch.zeros(shape, dtype=torch.int64, device=device),
            torch.zeros(shape, dtype=torch.float64, device=device),
            torch.zeros(shape, dtype=torch.float64, device=device),
            torch.zeros(1, dtype=torch.int64, device=device),
        )

    def tensors(self) -> list[torch.Tensor]:
        return [self.count, self.sum, self.sum_sq, self.n_tokens]

    def to(self, device) -> Partial:
        return Partial(*(t.to(device) for t in self.tensors()))


class Counter:
    """Installs hooks at a site; while active, each forward adds its counted tokens to ``partial``."""

    def __init__(self, adapter: Adapter, site: str, device: torch.device):
        self.adapter, self.site, self.device = adapter, site, device
        self.partial = Partial.zeros(adapter.num_layers, adapter.intermediate_size, device)
        self.index: torch.Tensor | None = None  # flat positions of counted tokens in the batch
        self.handles = []

    def __enter__(self) -> Counter:
        self.handles = self.adapter.hook(self.site, self._observe)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def reset(self) -> None:
        self.partial = Partial.zeros(self.adapter.num_layers, self.adapter.intermediate_size, self.device)

    def set_batch(self, counted: torch.Tensor) -> None:
        """Say which tokens of the next forward count ([B, T] bool); no host sync needed later."""
        flat = counted.reshape(-1).to(self.device, non_blocking=True)
        self.index = flat.nonzero().squeeze(1)
        self.partial.n_tokens += flat.sum()

    def _observe(self, layer: int, act: torch.Tensor) -> None:
        index = self.index if act.device == self.index.device else self.index.to(act.device)
        x = act.reshape(-1, act.shape[-1]).index_select(0, index)
        p = self.partial
        x64 = x.to(torch.float64)
        p.count[layer] += (x > 0).sum(0).to(p.count.device)
        p.sum[layer] += x64.sum(0).to(p.sum.device)
        p.sum_sq[layer] += (x64 * x64).sum(0).to(p.sum.device)
        return None
