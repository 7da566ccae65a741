"""Phi-1/1.5/2: non-gated MLP (fc1 → activation_fn → fc2)."""

from langneurons.models.base import Adapter


class PhiAdapter(Adapter):
    model_types = ("phi",)
    gated = False
    act_path = "mlp.activation_fn"
    down_path = "mlp.fc2"
