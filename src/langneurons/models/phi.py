"""Phi-1/1.5/2: non-gated MLP (fc1 → activation_fn → fc2)."""

from langneurons.models.base import NonGatedAdapter


class PhiAdapter(NonGatedAdapter):
    model_types = ("phi",)
    layers_path = "model.layers"
    act_path = "mlp.activation_fn"
    down_path = "mlp.fc2"
    final_norm_path = "model.final_layernorm"
    o_path = "self_attn.dense"
