"""Falcon: non-gated MLP (dense_h_to_4h → act → dense_4h_to_h)."""

from langneurons.models.base import Adapter


class FalconAdapter(Adapter):
    model_types = ("falcon",)
    gated = False
    layers_path = "transformer.h"
    act_path = "mlp.act"
    down_path = "mlp.dense_4h_to_h"
    intermediate_attr = ("ffn_hidden_size",)
