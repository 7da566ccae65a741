"""Apply interventions through ``Adapter.hook`` for the duration of a ``with`` block.

Which tokens an edit touches (positions "prompt" / "generated", batch rows) is decided in one place,
:class:`~langneurons.intervention.tracker.Tracker`. An intervention with ``rows`` edits those batch rows
only, so conditions can share a batch (evaluation/packing.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from langneurons.errors import LangneuronsError
from langneurons.intervention.directions import DirectionIntervention, apply_direction
from langneurons.intervention.spec import Intervention
from langneurons.intervention.tracker import Tracker
from langneurons.models.base import HEADS
from langneurons.models.loading import LoadedModel


@dataclass
class _Edit:
    idx: torch.Tensor  # long [n]
    scale: torch.Tensor  # [n]
    shift: torch.Tensor  # [n]
    positions: str
    batch_rows: tuple[int, int] | None = None


def _compile(interventions: Sequence[Intervention], num_layers: int, size: int, device, dtype,
             heads: int | None = None):  # fmt: skip
    """Per site, per layer: the list of edits (index tensors on the model's device and dtype)."""
    plan: dict[str, dict[int, list[_Edit]]] = {}
    for iv in interventions:
        width = heads if iv.site == HEADS else size
        if tuple(iv.mask.shape) != (num_layers, width):
            raise LangneuronsError(
                f"intervention {iv.label or ''} is for {tuple(iv.mask.shape)} {iv.site} units but the model has "
                f"{num_layers} layers × {width}"
            )
        for layer in iv.mask.any(1).nonzero().reshape(-1).tolist():
            idx = iv.mask[layer].nonzero().reshape(-1)
            edit = _Edit(
                idx.to(device),
                iv.scale[layer, idx].to(device=device, dtype=dtype),
                iv.shift[layer, idx].to(device=device, dtype=dtype),
                iv.positions,
                iv.rows,
            )
            plan.setdefault(iv.site, {}).setdefault(layer, []).append(edit)
    return plan


@contextmanager
def intervene(
    loaded: LoadedModel,
    interventions: Intervention | DirectionIntervention | Sequence[Intervention | DirectionIntervention],
    *,
    prompt_length: int | None = None,
) -> Iterator[Tracker]:
    """Apply ``interventions`` (in order) to every forward inside the block; all hooks go on exit.

    Neuron interventions edit the MLP site; direction interventions edit the decoder layers' output.
    """
    if isinstance(interventions, (Intervention, DirectionIntervention)):
        interventions = [interventions]
    directions = [iv for iv in interventions if isinstance(iv, DirectionIntervention)]
    interventions = [iv for iv in interventions if not isinstance(iv, DirectionIntervention)]
    adapter = loaded.adapter
    dtype = next(loaded.model.parameters()).dtype
    device = next(loaded.model.parameters()).device
    heads = adapter.num_heads if any(iv.site == HEADS for iv in interventions) else None
    plan = _compile(list(interventions), adapter.num_layers, adapter.intermediate_size, device, dtype, heads)
    residual_layers = sorted({layer for iv in directions for layer in iv.vectors})
    for layer in residual_layers:
        if not 0 <= layer < adapter.num_layers:
            raise LangneuronsError(f"direction intervention at layer {layer}, but the model has {adapter.num_layers}")
    tracker = Tracker(prompt_length, auto=prompt_length is None)
    row_limits = [iv.rows for iv in [*interventions, *directions] if iv.rows is not None]
    rows_needed = max((stop for _, stop in row_limits), default=0)

    # ablations leave BOS alone (directions.py): they need the forward's BOS positions
    bos_id = getattr(loaded.tokenizer, "bos_token_id", None) if any(iv.mode == "ablate" for iv in directions) else None

    def pre(_module, args, kwargs):
        tracker.read(args, kwargs)
        if rows_needed > tracker.batch:  # checked once per forward, not in every hook
            raise LangneuronsError(
                f"an intervention is limited to batch rows up to {rows_needed} but the batch has {tracker.batch}"
            )
        ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        tracker.bos = None if ids is None or bos_id is None else ids == bos_id

    def make_fn(site: str, edits_by_layer: dict[int, list[_Edit]]):
        def fn(layer: int, act: torch.Tensor) -> torch.Tensor:
            tracker.fired.add((site, layer))
            out = act.clone()
            for e in edits_by_layer[layer]:
                old = out.index_select(-1, e.idx)
                new = old * e.scale.to(old.dtype) + e.shift.to(old.dtype)
                where = tracker.where(e.positions, e.batch_rows, act)
                if where is not None:
                    new = torch.where(where, new, old)
                out.index_copy_(-1, e.idx, new)
            return out

        return fn

    def residual_fn(layer: int, hidden: torch.Tensor) -> torch.Tensor:
        tracker.fired.add(("residual", layer))
        out = hidden
        for iv in directions:
            if layer in iv.vectors:
                new = apply_direction(iv, layer, out)
                where = tracker.where(iv.positions, iv.rows, out)
                if where is not None:
                    new = torch.where(where, new, out)
                if iv.mode == "ablate" and tracker.bos is not None:  # never the BOS token
                    new = torch.where(tracker.bos.unsqueeze(-1), out, new)
                out = new
        return out

    handles = []
    try:
        handles.append(loaded.model.register_forward_pre_hook(pre, with_kwargs=True))
        for site, edits in plan.items():
            if site == HEADS:  # attention heads: [..., H, d], a head is a slice of the output projection's input
                handles += adapter.hook_heads(_head_fn(edits, tracker), layers=sorted(edits))
            elif adapter.is_moe:  # experts arrive as sparse blocks of routed rows
                handles += adapter.hook_blocks(site, _block_fn(site, edits, tracker), layers=sorted(edits))
            else:
                handles += adapter.hook(site, make_fn(site, edits), layers=sorted(edits))
        if residual_layers:
            handles += adapter.hook_residual(residual_fn, layers=residual_layers)
            plan.setdefault("residual", {}).update({layer: [] for layer in residual_layers})
        yield tracker
        tracker.check_fired({(site, layer) for site, edits in plan.items() for layer in edits})
    finally:
        for handle in handles:
            handle.remove()


def _block_fn(site: str, edits_by_layer: dict[int, list[_Edit]], tracker: Tracker):
    """The edits of each layer applied to a block: columns ``start + group·w + j`` of the rows it holds."""

    def fn(layer: int, x: torch.Tensor, rows) -> torch.Tensor | None:
        tracker.fired.add((site, layer))
        out, w = x, x.shape[1]
        for e in edits_by_layer[layer]:
            cols = e.idx - rows.start
            groups = 1 if rows.groups is None else rows.n_groups
            keep = (cols >= 0) & (cols < groups * w)
            cols, scale, shift = cols[keep], e.scale[keep], e.shift[keep]
            mask = torch.zeros(groups, w, dtype=torch.bool, device=x.device)
            a = torch.ones(groups, w, dtype=x.dtype, device=x.device)
            b = torch.zeros(groups, w, dtype=x.dtype, device=x.device)
            g, j = cols // w, cols % w
            mask[g, j], a[g, j], b[g, j] = True, scale.to(x.dtype), shift.to(x.dtype)
            index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device) if rows.groups is None else rows.groups
            where = mask.index_select(0, index)
            tokens = torch.arange(x.shape[0], device=x.device) if rows.tokens is None else rows.tokens
            limit = tracker.token_mask(e.positions, e.batch_rows, tokens)
            if limit is not None:
                where = where & limit.unsqueeze(1)
            out = torch.where(where, out * a.index_select(0, index) + b.index_select(0, index), out)
        return out

    return fn


def _head_fn(edits_by_layer: dict[int, list[_Edit]], tracker: Tracker):
    """Scale the chosen heads of each layer (``z [..., H, d]``; a head's d values share its scale)."""

    def fn(layer: int, z: torch.Tensor) -> torch.Tensor:
        tracker.fired.add((HEADS, layer))
        out = z.clone()
        for e in edits_by_layer[layer]:
            old = out.index_select(-2, e.idx)
            new = old * e.scale.to(old.dtype).unsqueeze(-1)
            where = tracker.where(e.positions, e.batch_rows, z.flatten(-2))
            if where is not None:
                new = torch.where(where.unsqueeze(-1), new, old)
            out.index_copy_(-2, e.idx, new)
        return out

    return fn
