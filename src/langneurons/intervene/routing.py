"""Router-level interventions on MoE models ("routing steering"): mask chosen experts (never chosen) or
add a bias to their router logits, at all positions, the prompt only or generated tokens only.

``with steer_routing(loaded, parse_route("mask:3:5,bias:*:2:1.5"), positions="generated"): model.generate(...)``
The router re-routes from the edited logits with the family's own rule (models/moe.py); the experts then
run on the new choice with the new weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from langneurons.errors import LangneuronsError
from langneurons.intervene.hooks import _forward_shape, _row_positions, _Tracker
from langneurons.intervene.spec import POSITIONS
from langneurons.models.loading import LoadedModel

ROUTE_MODES = ("mask", "bias")


@dataclass(frozen=True)
class RouteEdit:
    """Mask expert ``expert`` of ``layer`` (None: every MoE layer), or add ``value`` to its router logit."""

    mode: str
    layer: int | None
    expert: int
    value: float = 0.0


def parse_route(spec: str) -> list[RouteEdit]:
    """``mask:L:E`` and ``bias:L:E:VALUE`` items, comma-separated; ``L`` may be ``*`` (all MoE layers)."""
    edits = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        parts = item.split(":")
        try:
            mode = parts[0]
            if mode not in ROUTE_MODES or len(parts) != (3 if mode == "mask" else 4):
                raise ValueError
            layer = None if parts[1] == "*" else int(parts[1])
            edits.append(RouteEdit(mode, layer, int(parts[2]), float(parts[3]) if mode == "bias" else 0.0))
        except ValueError:
            raise LangneuronsError(
                f"bad routing edit {item!r}: use mask:LAYER:EXPERT or bias:LAYER:EXPERT:VALUE (LAYER may be *)"
            ) from None
    if not edits:
        raise LangneuronsError("--route is empty")
    return edits


def _plan(loaded: LoadedModel, edits: Sequence[RouteEdit]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    adapter = loaded.adapter
    if not adapter.is_moe:
        raise LangneuronsError(f"routing edits need a mixture-of-experts model; {loaded.name} has no router")
    n = adapter.num_experts
    plan: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for edit in edits:
        if not 0 <= edit.expert < n:
            raise LangneuronsError(f"expert {edit.expert} out of range: the model has experts 0..{n - 1}")
        layers = adapter.moe_layers if edit.layer is None else [edit.layer]
        for layer in layers:
            if layer not in adapter.moe_layers:
                raise LangneuronsError(f"layer {layer} is not an MoE layer (MoE layers: {adapter.moe_layers})")
            bias, masked = plan.setdefault(layer, (torch.zeros(n), torch.zeros(n, dtype=torch.bool)))
            if edit.mode == "mask":
                masked[edit.expert] = True
            else:
                bias[edit.expert] += edit.value
    return plan


@contextmanager
def steer_routing(
    loaded: LoadedModel,
    edits: Sequence[RouteEdit],
    *,
    positions: str = "all",
    prompt_length: int | None = None,
) -> Iterator[None]:
    """Apply routing ``edits`` to every forward inside the block (positions as in `intervene`)."""
    if positions not in POSITIONS:
        raise LangneuronsError(f"unknown positions {positions!r}; choose one of {', '.join(POSITIONS)}")
    plan = _plan(loaded, edits)
    tracker = _Tracker(prompt_length, auto=prompt_length is None)

    def pre(_module, args, kwargs):
        tracker.batch, tracker.length, tracker.offset = _forward_shape(args, kwargs)
        if tracker.auto and tracker.offset == 0:
            tracker.prompt_length = tracker.length

    def fn(layer: int, logits: torch.Tensor):
        bias, masked = plan[layer]
        bias = bias.to(logits.device).expand_as(logits)
        masked = masked.to(logits.device).expand_as(logits)
        if positions != "all":
            rows = _row_positions(tracker, positions, _AllRows, logits.shape[0], logits.device).unsqueeze(1)
            bias, masked = bias * rows, masked & rows
        return bias, masked

    handles = [loaded.model.register_forward_pre_hook(pre, with_kwargs=True)]
    try:
        handles += loaded.adapter.edit_routing(fn, layers=sorted(plan))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _AllRows:
    tokens = None
