"""Routing statistics of MoE layers while recording: per layer and expert, the counted tokens routed to
the expert (``routed_tokens``, int64) and the router's probability of the expert summed over counted
tokens (``router_probability``, float64). Dense layers stay zero."""

from __future__ import annotations

import torch

from langneurons.recording.groups import group_sums

ROUTING_TENSORS = ("routed_tokens", "router_probability")


class RoutingCounter:
    """Hooks every MoE router of ``counter.adapter``; counts only the counter's counted tokens."""

    def __init__(self, counter):
        self.counter = counter
        self.adapter = counter.adapter
        self.layers: dict[int, list[torch.Tensor]] = {}

    def install(self) -> list:
        return self.adapter.hook_router(self._observe)

    def reset(self) -> None:
        self.layers = {}

    def shapes(self) -> dict[str, tuple[tuple[int, int], torch.dtype]]:
        shape = (self.adapter.num_layers, self.adapter.num_experts)
        return {"routed_tokens": (shape, torch.int64), "router_probability": (shape, torch.float64)}

    def totals(self, device) -> dict[str, torch.Tensor]:
        shape = (self.adapter.num_layers, self.adapter.num_experts)
        routed = torch.zeros(shape, dtype=torch.int64, device=device)
        prob = torch.zeros(shape, dtype=torch.float64, device=device)
        for layer, (r, p) in self.layers.items():
            routed[layer] = r.to(device)
            prob[layer] = p.to(device)
        return {"routed_tokens": routed, "router_probability": prob}

    def _observe(self, layer: int, probs: torch.Tensor, index: torch.Tensor) -> None:
        keep = self.counter.counted_flags(None, probs.device)  # no host sync: uncounted rows go to bin n
        n, probs = self.adapter.num_experts, probs.to(torch.float64)
        if keep is not None:
            index = torch.where(keep.unsqueeze(1), index, n)
            probs = torch.where(keep.unsqueeze(1), probs, 0.0)
        flat = index.reshape(-1)
        routed = group_sums(torch.ones_like(flat, dtype=torch.int64).unsqueeze(1), flat, n)[:, 0]
        prob = probs.sum(0)
        acc = self.layers.get(layer)
        if acc is None:
            self.layers[layer] = [routed, prob]
        else:
            acc[0] += routed
            acc[1] += prob
