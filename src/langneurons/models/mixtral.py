"""Mixtral: top-k softmax router (``mlp.gate``), fused experts (``mlp.experts``), no shared expert."""

from langneurons.models.moe import MoeAdapter


class MixtralAdapter(MoeAdapter):
    model_types = ("mixtral",)
