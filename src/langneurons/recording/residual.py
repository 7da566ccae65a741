"""Sums of the residual stream after every decoder layer over counted tokens (DiffMean, docs/methods.md).

Rides along with a :class:`~langneurons.recording.counter.Counter` in the same forward (the counter owns it
when built with ``residual=True``): it reads the counter's mask of counted rows, so exactly the tokens
that are counted for the neurons are summed. Per layer it keeps ``[Σ h (H values), Σ ‖h‖]`` in float64
on that layer's device (each batch summed in float32 and folded in, as the neuron sums);
:meth:`ResidualCounter.totals` gives them as the stats file's extra tensors ``resid_sum`` [L, H] and
``resid_norm_sum`` [L].
"""

from __future__ import annotations

import torch

from langneurons.recording.accumulate import accumulation_dtype

RESIDUAL_TENSORS = ("resid_sum", "resid_norm_sum")


def residual_shapes(adapter) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-language shapes (without the language axis) of the residual extra tensors."""
    return {
        "resid_sum": ((adapter.num_layers, adapter.hidden_size), torch.float64),
        "resid_norm_sum": ((adapter.num_layers,), torch.float64),
    }


class ResidualCounter:
    """Hooks every decoder layer's output of ``counter.adapter``; sums only the counter's counted tokens."""

    def __init__(self, counter):
        self.counter = counter
        self.adapter = counter.adapter
        self.layers: dict[int, torch.Tensor] = {}  # layer -> float64 [H + 1] on its device

    def install(self) -> list:
        return self.adapter.hook_residual(self._observe)

    def reset(self) -> None:
        self.layers = {}

    def totals(self, device) -> dict[str, torch.Tensor]:
        """This unit's sums: ``resid_sum`` float64 [L, H] and ``resid_norm_sum`` float64 [L] on ``device``."""
        out = torch.zeros(self.adapter.num_layers, self.adapter.hidden_size + 1, dtype=torch.float64, device=device)
        for layer, acc in self.layers.items():
            out[layer] = acc.to(device)
        return {"resid_sum": out[:, :-1].contiguous(), "resid_norm_sum": out[:, -1].contiguous()}

    def _observe(self, layer: int, hidden: torch.Tensor) -> None:
        x = hidden.reshape(-1, hidden.shape[-1])
        rows = self.counter._mask(x.device)
        dtype = accumulation_dtype(x)  # float32 per batch, folded into the float64 sums (recording/counter.py)
        if rows is not None and rows.dtype == torch.bool:  # the compiled counter passes a row mask
            xs = torch.where(rows.unsqueeze(1), x, 0).to(dtype)
        else:
            xs = (x if rows is None else x.index_select(0, rows)).to(dtype)
        ones = xs.new_ones(1, xs.shape[0])
        norms = torch.linalg.vector_norm(xs, dim=1)
        update = torch.cat([(ones @ xs)[0], norms.sum().reshape(1)]).to(torch.float64)
        acc = self.layers.get(layer)
        self.layers[layer] = update if acc is None else acc + update
        return None
