"""GPT-NeoX (Pythia): non-gated MLP."""

from langneurons.models.base import Adapter


class GPTNeoXAdapter(Adapter):
    model_types = ("gpt_neox",)
    gated = False
    layers_path = "gpt_neox.layers"
    act_path = "mlp.act"
    down_path = "mlp.dense_4h_to_h"
