"""Apply interventions through ``Adapter.hook`` for the duration of a ``with`` block.

Positions: a position is the absolute index of a token in its (padded) sequence. The output at
position p predicts token p + 1, so the last prompt position (``prompt_length − 1``) is the one that
produces the first new token: "generated" means positions ≥ ``prompt_length − 1`` (every position
whose output is a generated token) and "prompt" the positions before it (docs/evaluation.md has a
diagram). With a KV cache the prompt is processed in
one forward and each new token afterwards; the offset of a forward is read from its
``cache_position`` or its cache length, so a cached one-token step at position p is "generated"
when p ≥ prompt_length. When ``prompt_length`` is not given, it is the length of the latest forward
that started at position 0 (the prompt forward of a cached ``generate``). Batched prompts must be
left-padded for "prompt"/"generated" to mean the same thing in every row (padding is prompt).
An intervention with ``rows`` edits those batch rows only, so conditions can share a batch
(evaluate/packing.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from langneurons.errors import LangneuronsError
from langneurons.intervene.directions import DirectionIntervention, apply_direction
from langneurons.intervene.spec import Intervention
from langneurons.models.loading import LoadedModel


@dataclass
class _Edit:
    idx: torch.Tensor  # long [n]
    scale: torch.Tensor  # [n]
    shift: torch.Tensor  # [n]
    positions: str
    batch_rows: tuple[int, int] | None = None


@dataclass
class _Tracker:
    """Shape and start position of the forward in flight, read by a pre-hook on the whole model."""

    prompt_length: int | None
    auto: bool
    batch: int = 1
    length: int = 1
    offset: int = 0
    seen: list = field(default_factory=list)
    fired: set = field(default_factory=set)  # (site, layer) whose hook ran at least once
    forwards: int = 0
    bos: torch.Tensor | None = None  # [B, T] bool: the BOS tokens of the forward in flight

    def check_fired(self, plan: dict[str, dict[int, list[_Edit]]]) -> None:
        """An edit whose hook never ran while the model did run is an error, not a silent no-op."""
        if not self.forwards:
            return
        missing = sorted({(site, layer) for site, edits in plan.items() for layer in edits} - self.fired)
        if missing:
            sites = sorted({site for site, _ in missing})
            layers = ",".join(str(layer) for _, layer in missing)
            raise LangneuronsError(
                f"the intervention never reached site {'/'.join(sites)} of layer(s) {layers}: the "
                "model's MLP layout differs from what its adapter expects (fused or replaced module?)"
            )

    def position_mask(self, positions: str, act: torch.Tensor) -> torch.Tensor:
        """Bool, broadcastable to ``act[..., :1]``: True where the edit applies."""
        if self.prompt_length is None:
            raise LangneuronsError("positions 'prompt'/'generated' need a prompt length (or a cached generate)")
        pos = torch.arange(self.offset, self.offset + self.length, device=act.device)
        first_generating = self.prompt_length - 1  # its output is the first new token
        keep = pos < first_generating if positions == "prompt" else pos >= first_generating
        if act.dim() == 2:  # OPT flattens [B*T, F]
            return keep.repeat(act.shape[0] // self.length).unsqueeze(-1)
        return keep.view(*([1] * (act.dim() - 2)), self.length, 1)

    def row_mask(self, rows: tuple[int, int], act: torch.Tensor) -> torch.Tensor:
        """Bool, broadcastable to ``act[..., :1]``: True on batch rows [start, stop)."""
        b = torch.arange(self.batch, device=act.device)
        keep = (b >= rows[0]) & (b < rows[1])
        if act.dim() == 2:  # OPT flattens [B*T, F]
            return keep.repeat_interleave(act.shape[0] // self.batch).unsqueeze(-1)
        return keep.view(self.batch, *([1] * (act.dim() - 1)))

    def where(self, positions: str, rows: tuple[int, int] | None, act: torch.Tensor) -> torch.Tensor | None:
        """Where a position- or row-limited edit applies (None: everywhere)."""
        mask = None if positions == "all" else self.position_mask(positions, act)
        if rows is None:
            return mask
        in_rows = self.row_mask(rows, act)
        return in_rows if mask is None else mask & in_rows


def _forward_shape(args: tuple, kwargs: dict) -> tuple[int, int, int]:
    ids = kwargs.get("input_ids")
    if ids is None and args and isinstance(args[0], torch.Tensor):
        ids = args[0]
    if ids is None:
        ids = kwargs.get("inputs_embeds")
    if ids is None:
        raise LangneuronsError("cannot see the input of the forward (no input_ids or inputs_embeds)")
    batch, length = int(ids.shape[0]), int(ids.shape[1])
    offset = 0
    cache_position = kwargs.get("cache_position")
    past = kwargs.get("past_key_values", kwargs.get("cache"))  # newer transformers name it ``cache``
    if isinstance(cache_position, torch.Tensor) and cache_position.numel():
        offset = int(cache_position.reshape(-1)[0])
    elif past is not None and hasattr(past, "get_seq_length"):
        offset = int(past.get_seq_length())
    elif isinstance(past, (tuple, list)) and past and past[0] is not None:
        offset = int(past[0][0].shape[-2])
    return batch, length, offset


def _compile(interventions: Sequence[Intervention], num_layers: int, size: int, device, dtype):
    """Per site, per layer: the list of edits (index tensors on the model's device and dtype)."""
    plan: dict[str, dict[int, list[_Edit]]] = {}
    for iv in interventions:
        if tuple(iv.mask.shape) != (num_layers, size):
            raise LangneuronsError(
                f"intervention {iv.label or ''} is for {tuple(iv.mask.shape)} neurons but the model has "
                f"{num_layers} layers × {size} neurons"
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
) -> Iterator[_Tracker]:
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
    plan = _compile(list(interventions), adapter.num_layers, adapter.intermediate_size, device, dtype)
    residual_layers = sorted({layer for iv in directions for layer in iv.vectors})
    for layer in residual_layers:
        if not 0 <= layer < adapter.num_layers:
            raise LangneuronsError(f"direction intervention at layer {layer}, but the model has {adapter.num_layers}")
    tracker = _Tracker(prompt_length, auto=prompt_length is None)
    row_limits = [iv.rows for iv in [*interventions, *directions] if iv.rows is not None]
    rows_needed = max((stop for _, stop in row_limits), default=0)

    # ablations leave BOS alone (directions.py): they need the forward's BOS positions
    bos_id = getattr(loaded.tokenizer, "bos_token_id", None) if any(iv.mode == "ablate" for iv in directions) else None

    def pre(_module, args, kwargs):
        tracker.batch, tracker.length, tracker.offset = _forward_shape(args, kwargs)
        if rows_needed > tracker.batch:  # checked once per forward, not in every hook
            raise LangneuronsError(
                f"an intervention is limited to batch rows up to {rows_needed} but the batch has {tracker.batch}"
            )
        ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        tracker.bos = None if ids is None or bos_id is None else ids == bos_id
        tracker.forwards += 1
        if tracker.auto and tracker.offset == 0:
            tracker.prompt_length = tracker.length

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
            if adapter.is_moe:  # experts arrive as sparse blocks of routed rows
                handles += adapter.hook_blocks(site, _block_fn(site, edits, tracker), layers=sorted(edits))
            else:
                handles += adapter.hook(site, make_fn(site, edits), layers=sorted(edits))
        if residual_layers:
            handles += adapter.hook_residual(residual_fn, layers=residual_layers)
            plan.setdefault("residual", {}).update({layer: [] for layer in residual_layers})
        yield tracker
        tracker.check_fired(plan)
    finally:
        for handle in handles:
            handle.remove()


def _row_positions(tracker: _Tracker, positions: str, rows, n: int, device) -> torch.Tensor:
    """Bool [n]: rows of a block (tokens of the flattened batch) where a position-limited edit applies."""
    if tracker.prompt_length is None:
        raise LangneuronsError("positions 'prompt'/'generated' need a prompt length (or a cached generate)")
    tokens = torch.arange(n, device=device) if rows.tokens is None else rows.tokens
    pos = tokens % tracker.length + tracker.offset
    first_generating = tracker.prompt_length - 1  # as `_Tracker.position_mask`
    return pos < first_generating if positions == "prompt" else pos >= first_generating


def _block_where(tracker: _Tracker, e: _Edit, rows, n: int, device) -> torch.Tensor | None:
    """Bool [n]: the block's rows where a position- or batch-row-limited edit applies (None: all)."""
    keep = None if e.positions == "all" else _row_positions(tracker, e.positions, rows, n, device)
    if e.batch_rows is None:
        return keep
    tokens = torch.arange(n, device=device) if rows.tokens is None else rows.tokens
    batch_row = tokens // tracker.length
    in_rows = (batch_row >= e.batch_rows[0]) & (batch_row < e.batch_rows[1])
    return in_rows if keep is None else keep & in_rows


def _block_fn(site: str, edits_by_layer: dict[int, list[_Edit]], tracker: _Tracker):
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
            limit = _block_where(tracker, e, rows, x.shape[0], x.device)
            if limit is not None:
                where = where & limit.unsqueeze(1)
            out = torch.where(where, out * a.index_select(0, index) + b.index_select(0, index), out)
        return out

    return fn
