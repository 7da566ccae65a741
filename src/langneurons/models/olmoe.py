"""OLMoE and FlexOlmo: top-k softmax router (``mlp.gate``, ``norm_topk_prob``), fused experts, every layer MoE."""

from langneurons.models.moe import MoeAdapter


class OlmoeAdapter(MoeAdapter):
    model_types = ("olmoe", "flex_olmo")
