"""Which tokens of the forward in flight an edit applies to: its positions (prompt / generated) and batch rows.

A position is the absolute index of a token in its (padded) sequence. The output at position p predicts
token p + 1, so the last prompt position (``prompt_length − 1``) produces the first new token:
"generated" means positions ≥ ``prompt_length − 1`` and "prompt" the positions before it
(docs/evaluation.md has a diagram). With a KV cache the prompt is processed in one forward and each new
token afterwards; the offset of a forward is read from its ``cache_position`` or its cache length.
When ``prompt_length`` is not given, it is the length of the latest forward that started at position 0
(the prompt forward of a cached ``generate``). Batched prompts must be left-padded for these to mean the
same thing in every row (padding is prompt).

Every consumer — dense MLP sites, MoE expert blocks, the residual stream, router edits — asks the same
question through :meth:`Tracker.token_mask` with the flat (B·T) indices of the tokens it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from langneurons.errors import LangneuronsError


def forward_shape(args: tuple, kwargs: dict) -> tuple[int, int, int]:
    """(batch, length, offset) of a model forward, from its pre-hook's arguments."""
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


@dataclass
class Tracker:
    """Shape and start position of the forward in flight, read by a pre-hook on the whole model."""

    prompt_length: int | None = None
    auto: bool = True  # take the prompt length from the latest forward that starts at position 0
    batch: int = 1
    length: int = 1
    offset: int = 0
    fired: set = field(default_factory=set)  # (site, layer) whose hook ran at least once
    forwards: int = 0
    bos: torch.Tensor | None = None  # [B, T] bool: the BOS tokens of the forward in flight
    attended: torch.Tensor | None = None  # [B, T] bool: the real (non-padding) tokens, where known

    def read(self, args: tuple, kwargs: dict) -> None:
        """Take the shape, offset and attention mask of the forward about to run."""
        self.batch, self.length, self.offset = forward_shape(args, kwargs)
        self.forwards += 1
        if self.auto and self.offset == 0:
            self.prompt_length = self.length
        mask = kwargs.get("attention_mask")
        ok = isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[0] == self.batch
        self.attended = mask[:, -self.length :].bool() if ok else None

    def token_mask(self, positions: str, rows: tuple[int, int] | None, tokens: torch.Tensor) -> torch.Tensor | None:
        """Bool, shaped like ``tokens`` (flat B·T indices of the forward): where an edit limited to
        ``positions`` (all / prompt / generated) and batch ``rows`` [start, stop) applies (None: all)."""
        keep = None
        if positions != "all":
            if self.prompt_length is None:
                raise LangneuronsError("positions 'prompt'/'generated' need a prompt length (or a cached generate)")
            pos = tokens % self.length + self.offset
            first_generating = self.prompt_length - 1  # its output is the first new token
            keep = pos < first_generating if positions == "prompt" else pos >= first_generating
        if rows is not None:
            batch_row = tokens // self.length
            in_rows = (batch_row >= rows[0]) & (batch_row < rows[1])
            keep = in_rows if keep is None else keep & in_rows
        return keep

    def where(self, positions: str, rows: tuple[int, int] | None, act: torch.Tensor) -> torch.Tensor | None:
        """:meth:`token_mask` for a dense activation ``[B, T, F]`` (or OPT's ``[B·T, F]``), broadcastable
        to it (None: everywhere)."""
        if positions == "all" and rows is None:
            return None
        tokens = torch.arange(act.numel() // act.shape[-1], device=act.device)
        keep = self.token_mask(positions, rows, tokens)
        return None if keep is None else keep.view(*act.shape[:-1], 1)

    def check_fired(self, wanted: set[tuple[str, int]]) -> None:
        """An edit whose hook never ran while the model did run is an error, not a silent no-op."""
        if not self.forwards:
            return
        missing = sorted(wanted - self.fired)
        if missing:
            sites = sorted({site for site, _ in missing})
            layers = ",".join(str(layer) for _, layer in missing)
            raise LangneuronsError(
                f"the intervention never reached site {'/'.join(sites)} of layer(s) {layers}: the "
                "model's MLP layout differs from what its adapter expects (fused or replaced module?)"
            )
