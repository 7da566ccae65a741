"""Falcon: non-gated MLP (dense_h_to_4h → act → dense_4h_to_h)."""

from langneurons.models.base import NonGatedAdapter


class FalconAdapter(NonGatedAdapter):
    model_types = ("falcon",)
    intermediate_attr = ("ffn_hidden_size",)
