"""Router-level interventions on MoE models ("routing steering"): mask chosen experts (never chosen) or
add a bias to their router logits, at all positions, the prompt only or generated tokens only.

``with steer_routing(loaded, parse_route("mask:3:5,bias:*:2:1.5"), positions="generated"): model.generate(...)``
The router re-routes from the edited logits with the family's own rule (models/moe.py); the experts then
run on the new choice with the new weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from langneurons.errors import LangneuronsError
from langneurons.intervention.spec import POSITIONS
from langneurons.intervention.tracker import Tracker
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


@dataclass
class RoutingEffect:
    """What a routing edit changed: per batch row, the edited (token, MoE layer) decisions and how many of
    them chose another expert set; and the range of the router logits it was added to.

    A bias that is small against the router's logit range changes no decision — and then no output —
    which must be reported as such, not as "router steering has no effect".
    """

    changed: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    total: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    low: torch.Tensor = field(default_factory=lambda: torch.tensor(math.inf))
    high: torch.Tensor = field(default_factory=lambda: torch.tensor(-math.inf))

    def add(
        self, row_changed: torch.Tensor, row_total: torch.Tensor, logits: torch.Tensor, counted: torch.Tensor
    ) -> None:
        """Fold in one layer's decisions (per batch row) and the range of its ``counted`` rows' finite logits.
        Everything stays on the logits' device: no host synchronisation inside a generation step."""
        n = max(len(self.changed), len(row_changed))
        self.changed = _grow(self.changed, n, row_changed.device) + _grow(row_changed, n, row_changed.device)
        self.total = _grow(self.total, n, row_total.device) + _grow(row_total, n, row_total.device)
        keep = torch.isfinite(logits) & counted.unsqueeze(-1)
        inf = torch.tensor(math.inf, device=logits.device, dtype=logits.dtype)
        self.low = torch.minimum(self.low.to(logits.device), torch.where(keep, logits, inf).amin().float())
        self.high = torch.maximum(self.high.to(logits.device), torch.where(keep, logits, -inf).amax().float())

    def summary(self) -> dict[str, float | int | None]:
        """``routing_changed`` (share), the decisions counted, and the router logit range, for a result file."""
        total, low, high = int(self.total.sum()), float(self.low), float(self.high)
        return {
            "routing_changed": round(int(self.changed.sum()) / total, 6) if total else None,
            "routing_decisions": total,
            "router_logit_range": [round(low, 4), round(high, 4)] if math.isfinite(low) else None,
        }


def routing_warning(summary: dict[str, Any]) -> str | None:
    """A one-line warning when a routing edit moved no routing decision on the evaluated text
    (``summary`` as :meth:`RoutingEffect.summary` or :func:`routing_summary` give it)."""
    if not summary.get("routing_decisions") or summary.get("routing_changed"):
        return None
    lo, hi = summary["router_logit_range"] or (float("nan"), float("nan"))
    return (
        f"the routing edit changed no expert choice in {summary['routing_decisions']} routing decisions: the "
        f"router logits span [{lo:.3g}, {hi:.3g}]; a bias smaller than the gap between experts moves nothing"
    )


def routing_summary(gens: list[dict[str, Any]]) -> dict[str, Any]:
    """:meth:`RoutingEffect.summary` over generations that carry their own counts (``generate``)."""
    moved = sum(int(g.get("routing_moved", 0)) for g in gens)
    total = sum(int(g.get("routing_decisions", 0)) for g in gens)
    ranges = [g["router_logit_range"] for g in gens if g.get("router_logit_range")]
    return {
        "routing_changed": round(moved / total, 6) if total else None,
        "routing_decisions": total,
        "router_logit_range": [min(r[0] for r in ranges), max(r[1] for r in ranges)] if ranges else None,
    }


def _grow(t: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    t = t.to(device)
    return torch.cat([t, torch.zeros(n - len(t), dtype=t.dtype, device=device)]) if len(t) < n else t


@contextmanager
def steer_routing(
    loaded: LoadedModel,
    edits: Sequence[RouteEdit],
    *,
    positions: str = "all",
    prompt_length: int | None = None,
) -> Iterator[RoutingEffect]:
    """Apply routing ``edits`` to every forward inside the block (positions as in `intervene`); yields a
    :class:`RoutingEffect` that counts the routing decisions the edit changed."""
    if positions not in POSITIONS:
        raise LangneuronsError(f"unknown positions {positions!r}; choose one of {', '.join(POSITIONS)}")
    plan = _plan(loaded, edits)
    tracker = Tracker(prompt_length, auto=prompt_length is None)

    def pre(_module, args, kwargs):
        tracker.read(args, kwargs)

    def edited_rows(logits: torch.Tensor) -> torch.Tensor | None:
        tokens = torch.arange(logits.shape[0], device=logits.device)
        return tracker.token_mask(positions, None, tokens)

    def fn(layer: int, logits: torch.Tensor):
        bias, masked = plan[layer]
        bias = bias.to(logits.device).expand_as(logits)
        masked = masked.to(logits.device).expand_as(logits)
        rows = edited_rows(logits)
        if rows is not None:
            bias, masked = bias * rows.unsqueeze(1), masked & rows.unsqueeze(1)
        return bias, masked

    effect = RoutingEffect()

    def observe(_layer: int, logits: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> None:
        moved = (before.sort(dim=-1).values != after.sort(dim=-1).values).any(dim=-1)
        rows = edited_rows(logits)
        counted = torch.ones_like(moved) if rows is None else rows
        flat = logits.shape[0] == tracker.batch * tracker.length  # [B·T] rows in batch order
        batch = tracker.batch if flat else 1
        if flat and tracker.attended is not None:  # padding is routed too, but no text is read there
            counted = counted & tracker.attended.reshape(-1).to(counted.device)
        per_row = lambda x: x.reshape(batch, -1).sum(dim=1)  # noqa: E731
        effect.add(per_row(moved & counted), per_row(counted), logits, counted)

    handles = [loaded.model.register_forward_pre_hook(pre, with_kwargs=True)]
    try:
        handles += loaded.adapter.edit_routing(fn, layers=sorted(plan), observe=observe)
        yield effect
    finally:
        for handle in handles:
            handle.remove()
