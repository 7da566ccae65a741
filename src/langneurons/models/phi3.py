"""Phi-3: gated MLP with a fused gate_up projection; act = activation_fn(gate half)."""

from langneurons.models.base import Adapter


class Phi3Adapter(Adapter):
    model_types = ("phi3",)
    act_path = "mlp.activation_fn"
