"""GPT-NeoX (Pythia): non-gated MLP."""

from langneurons.models.base import NonGatedAdapter


class GPTNeoXAdapter(NonGatedAdapter):
    model_types = ("gpt_neox",)
    layers_path = "gpt_neox.layers"
    final_norm_path = "gpt_neox.final_layer_norm"
    o_path = "attention.dense"
