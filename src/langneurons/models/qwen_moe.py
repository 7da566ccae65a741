"""Qwen2-MoE (a sigmoid-gated shared expert, ``mlp.shared_expert``) and Qwen3-MoE (none); both may keep
dense MLP layers (``mlp_only_layers``, ``decoder_sparse_step``), which stay ordinary neurons."""

from langneurons.models.moe import MoeAdapter


class Qwen2MoeAdapter(MoeAdapter):
    model_types = ("qwen2_moe", "qwen3_next")  # Qwen3-Next: the same MoE block beside linear attention
    shared_attr = "shared_expert"


class Qwen3MoeAdapter(MoeAdapter):
    model_types = ("qwen3_moe",)
